"""Our SlowFast-R101 / SlowOnly-R50 against mmaction2 1.2.0's own modules, in float64.

The reference is installed outside the venv by ``.ci/run`` (``tools/mmaction-reference`` of the
shared tools, into ``$MMDG_MMACTION_REF``, default ``<repo>/.mmaction-ref``).  Its random state
dict (BatchNorm statistics and affine parameters re-drawn so they matter) is saved as an mmaction2
recognizer checkpoint and loaded through the encoder factories a user calls, then both networks
run on the same clip in eval mode.
"""
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

from mmdg.models.encoders import build_encoder

REF = Path(os.environ.get("MMDG_MMACTION_REF", Path(__file__).resolve().parents[1] / ".mmaction-ref"))


@pytest.fixture(scope="module")
def ref():
    if not (REF / "mmdg_mmaction_ref.py").exists():
        msg = (f"mmaction2 reference NOT INSTALLED at {REF}: the SlowFast/SlowOnly parity tests did not run "
               "(.ci/run installs it; or bash <shared tools>/mmaction-reference.sh .mmaction-ref)")
        warnings.warn(msg)
        pytest.skip(msg)
    sys.path.insert(0, str(REF))
    try:
        import mmdg_mmaction_ref
    finally:
        sys.path.remove(str(REF))
    return mmdg_mmaction_ref


def randomized_checkpoint(net, path):
    g = torch.Generator().manual_seed(0)
    sd = net.state_dict()
    for k, v in sd.items():
        if k.endswith("running_var") or k.endswith("bn.weight"):
            v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        elif k.endswith("running_mean") or k.endswith("bn.bias"):
            v.copy_(torch.randn(v.shape, generator=g) * 0.1)
    net.load_state_dict(sd)
    ckpt = {f"backbone.{k}": v for k, v in sd.items()}
    ckpt["cls_head.fc_cls.weight"] = torch.zeros(400, 8)
    torch.save({"state_dict": ckpt, "meta": {"epoch": 1}}, path)


def max_rel(a, b):
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize("name,encoder,shape", [("slowfast_r101", "slowfast_r101", (3, 8, 48, 48)),
                                                ("slowonly_r50", "slowonly_r50", (2, 4, 48, 48))])
def test_matches_mmaction2_in_float64(ref, name, encoder, shape, tmp_path):
    theirs = getattr(ref, name)()
    randomized_checkpoint(theirs, tmp_path / "ckpt.pth")
    ours = build_encoder(encoder, shape, weights=str(tmp_path / "ckpt.pth"), freeze_until=None)
    theirs.double().eval()
    ours.double().eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        want = theirs(x)
        got = ours.net(x)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want) == (2 if name == "slowfast_r101" else 1)
    for w, o in zip(want, got):
        assert w.shape == o.shape and w.abs().max() > 0
        err = max_rel(w, o)
        print(f"{name} pathway {tuple(w.shape)}: max relative error {err:.3e}")
        assert err <= 1e-6
    # the encoder's pooled feature is the mean of each pathway's map, concatenated
    with torch.no_grad():
        feat = ours(x)
    torch.testing.assert_close(feat, torch.cat([w.mean(dim=(2, 3, 4)) for w in want], 1), rtol=1e-9, atol=1e-9)
