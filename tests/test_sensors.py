"""The packaged ``phone_watch`` benchmark: files, domains, splits, normaliser, errors, rebuild."""
import hashlib
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdg.data import build_benchmark, leave_one_domain_out, make_split
from mmdg.data.base import TensorDataset
from mmdg.data.sensors import PhoneWatch

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "mmdg" / "resources" / "sensors"
NPZ, META = RES / "phone_watch.npz", RES / "phone_watch.json"
# the raw archive: $SP_SW_HAR_ARCHIVE, else ../shared/data/real_small/ beside the checkout (the builder's default)
ARCHIVE = Path(os.environ.get("SP_SW_HAR_ARCHIVE") or ROOT.parent / "shared/data/real_small/sp_sw_har.tar.xz")
CLASSES = ["SEATED", "STANDING_UP", "WALKING", "TURNING", "SITTING_DOWN"]
DOCUMENTED = {"young": 9, "middle": 8, "older": 6}  # subjects per age domain (module docstring, README)


def documented_age_domain(age):  # the rule as the docstring states it, written out independently
    return "young" if age < 40 else ("middle" if age < 55 else "older")


def content_sha256(arrays):
    """The arrays checksum as the metadata documents it: name|dtype|shape line + bytes, names sorted."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update((name + "|" + a.dtype.str + "|" + str(tuple(a.shape)) + "\n").encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def raw():
    with np.load(NPZ) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def meta():
    return json.loads(META.read_text())


@pytest.fixture(scope="module")
def bench():
    return build_benchmark("phone_watch")


def subject_ids(raw):
    return np.array([f"s{k:02d}" for k in raw["subject"]])


# ---------------------------------------------------------------- packaged files
def test_packaged_files_small_and_checksums_match(raw, meta):
    assert NPZ.is_file() and META.is_file() and (RES / "README.md").is_file()
    assert NPZ.stat().st_size <= 10_000_000
    assert meta["files"]["npz_bytes"] == NPZ.stat().st_size
    assert hashlib.sha256(NPZ.read_bytes()).hexdigest() == meta["files"]["npz_sha256"]
    assert content_sha256(raw) == meta["files"]["arrays_sha256"]
    readme = (RES / "README.md").read_text()
    for needed in ("CC BY 4.0", "10.5281/zenodo.8398688", "Matey-Sanz", "build_sensor_data.py --archive"):
        assert needed in readme


def test_package_data_includes_the_sensor_files():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mmdg"]
    matched = {p.name for pat in patterns for p in (ROOT / "mmdg").glob(pat) if p.parent == RES}
    assert {"phone_watch.npz", "phone_watch.json", "README.md"} <= matched


def test_meta_counts_agree_with_the_arrays(raw, meta):
    ids = subject_ids(raw)
    assert meta["windows"] == len(raw["label"])
    for d, c in meta["counts"]["age"].items():
        members = [s for s, v in meta["subjects"].items() if documented_age_domain(v["age"]) == d]
        assert c["subjects"] == len(members)
        for split_id, split in enumerate(("train", "test")):
            sel = np.isin(ids, members) & (raw["split"] == split_id)
            assert c[split] == {k: int(np.sum(raw["label"][sel] == i)) for i, k in enumerate(CLASSES)}


# ---------------------------------------------------------------- samples
def test_shapes_dtypes_and_labels(bench, raw):
    assert bench.input_shapes() == {"phone": (6, 50), "watch": (6, 50)}
    assert list(bench.classes) == CLASSES and bench.modalities == ("phone", "watch")
    total = 0
    for i, d in enumerate(bench.domains):
        for split in ("train", "test"):
            ds = bench.dataset(d, split)
            assert isinstance(ds, TensorDataset)
            n = len(ds)
            total += n
            for m in ("phone", "watch"):
                x = ds.inputs[m]
                assert x.dtype == torch.float32 and tuple(x.shape) == (n, 6, 50)
                assert torch.isfinite(x).all()
            assert ds.label.dtype == torch.long and set(ds.label.tolist()) == set(range(5))  # all classes
            assert (ds.domain == i).all()
            sample = ds[0]
            assert sample["inputs"]["phone"].shape == (6, 50) and sample["domain"] == i
    assert total == len(raw["label"])
    assert (raw["majority"].astype(int) * 2 > 50).all()  # strict-majority labels


def test_datasets_hold_the_windows_of_their_domain_subjects(bench, raw, meta):
    ids = subject_ids(raw)
    for d in bench.domains:
        members = [s for s, v in meta["subjects"].items() if documented_age_domain(v["age"]) == d]
        for split_id, split in enumerate(("train", "test")):
            sel = np.isin(ids, members) & (raw["split"] == split_id)
            ds = bench.dataset(d, split)
            assert torch.equal(ds.inputs["watch"], torch.from_numpy(raw["watch"][sel].astype(np.float32)))
            assert torch.equal(ds.label, torch.from_numpy(raw["label"][sel].astype(np.int64)))


def test_channels_option(bench):
    full = bench.dataset("young", "test").inputs["phone"]
    for channels, idx in (("acc", slice(0, 3)), ("gyro", slice(3, 6))):
        b = PhoneWatch(channels=channels)
        assert b.input_shapes() == {"phone": (3, 50), "watch": (3, 50)}
        assert torch.equal(b.dataset("young", "test").inputs["phone"], full[:, idx])


# ---------------------------------------------------------------- domains
def test_every_subject_in_exactly_one_documented_domain(bench, meta):
    assert bench.domains == ("young", "middle", "older")
    seen = [s for d in bench.domains for s in bench.subjects(d)]
    assert sorted(seen) == sorted(meta["subjects"]) and len(seen) == len(set(seen)) == 23
    for d in bench.domains:
        assert len(bench.subjects(d)) == DOCUMENTED[d]
        for s in bench.subjects(d):
            assert documented_age_domain(meta["subjects"][s]["age"]) == d == meta["subjects"][s]["domain"]["age"]


def test_gender_domains(meta):
    b = PhoneWatch(domains_by="gender")
    assert b.domains == ("female", "male")
    for d, code in (("female", "F"), ("male", "M")):
        assert b.subjects(d) == sorted(s for s, v in meta["subjects"].items() if v["gender"] == code)
    assert len(b.subjects("female")) == 10 and len(b.subjects("male")) == 13
    assert sum(len(b.dataset(d, s)) for d in b.domains for s in ("train", "test")) == meta["windows"]


# ---------------------------------------------------------------- splits
def test_train_and_test_windows_of_a_subject_are_disjoint_in_time(bench, raw, meta):
    window_ms = 1000 * meta["window"] / meta["rate_hz"]
    ids = subject_ids(raw)
    for s, info in meta["subjects"].items():
        n = len(info["executions"])
        assert info["test_executions"] == sorted(info["executions"])[n - int(0.3 * n + 0.5):]
        mine = ids == s
        train, test = mine & (raw["split"] == 0), mine & (raw["split"] == 1)
        assert train.any() and test.any()
        assert not set(raw["execution"][train]) & set(raw["execution"][test])
        assert set(raw["execution"][test]) == set(info["test_executions"])
        assert raw["start_ms"][train].max() + window_ms <= raw["start_ms"][test].min()
    for d in bench.domains:  # the benchmark's own view of the same
        tr, te = bench.window_info(d, "train"), bench.window_info(d, "test")
        for k in set(tr["subject"].tolist()):
            assert tr["start_ms"][tr["subject"] == k].max() + window_ms <= te["start_ms"][te["subject"] == k].min()


# ---------------------------------------------------------------- normaliser
def test_normaliser_is_fitted_on_source_train_only(bench, raw, meta):
    split = make_split(bench, "older")
    ids = subject_ids(raw)
    sources = [s for s, v in meta["subjects"].items() if documented_age_domain(v["age"]) != "older"]
    src_train = np.isin(ids, sources) & (raw["split"] == 0)
    everything = raw["split"] == 0
    norm = bench.fit_normalizer(relabel_sources(bench))
    for m in ("phone", "watch"):
        x = raw[m][src_train].astype(np.float64)
        np.testing.assert_allclose(norm.mean[m].numpy(), x.mean(axis=(0, 2)), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(norm.std[m].numpy(), x.std(axis=(0, 2)), rtol=1e-6)
        all_mean = raw[m][everything].astype(np.float64).mean(axis=(0, 2))
        assert np.abs(norm.mean[m].numpy() - all_mean).max() > 1e-3  # the target's windows were left out
        z = split.train.inputs[m].double()
        np.testing.assert_allclose(z.mean(dim=(0, 2)).numpy(), 0.0, atol=1e-4)
        np.testing.assert_allclose(z.std(dim=(0, 2), unbiased=False).numpy(), 1.0, atol=1e-4)
        # the target is normalised with the source statistics, so it is not exactly standardised
        # the target is the whole held-out band: its test windows, then its train windows
        held_out = ~np.isin(ids, sources)
        target = np.concatenate([raw[m][held_out & (raw["split"] == 1)],
                                 raw[m][held_out & (raw["split"] == 0)]]).astype(np.float64)
        expected = (target - x.mean(axis=(0, 2))[:, None]) / x.std(axis=(0, 2))[:, None]
        np.testing.assert_allclose(split.test.inputs[m].numpy(), expected, atol=1e-4)
        t = split.test.inputs[m].double()
        assert (t.mean(dim=(0, 2)).abs().max() > 0.01) or ((t.std(dim=(0, 2)) - 1).abs().max() > 0.01)


def relabel_sources(bench):
    return TensorDataset.concat([bench.dataset(d, "train") for d in ("young", "middle")])


def test_leave_one_domain_out_runs(bench):
    splits = list(leave_one_domain_out(bench))
    assert [s.target for s in splits] == ["young", "middle", "older"]
    for s in splits:
        assert (s.test.domain == -1).all() and set(s.train.domain.tolist()) == {0, 1}


# ---------------------------------------------------------------- errors
def test_bad_domain_split_and_options(bench):
    with pytest.raises(ValueError, match="unknown domain 'adult'"):
        bench.dataset("adult", "train")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        bench.dataset("young", "val")
    with pytest.raises(ValueError, match="channels 'mag'"):
        PhoneWatch(channels="mag")
    with pytest.raises(ValueError, match="domains_by 'height'"):
        PhoneWatch(domains_by="height")
    with pytest.raises(TypeError, match="unknown parameter"):
        build_benchmark("phone_watch", window=100)
    with pytest.raises(TypeError, match="TensorDataset"):
        bench.fit_normalizer([1, 2, 3])


def test_missing_or_corrupt_files_name_the_file_and_the_fix(tmp_path, raw):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*build_sensor_data\.py"):
        PhoneWatch(data_file=missing)
    no_meta = tmp_path / "lonely.npz"
    shutil.copy(NPZ, no_meta)
    with pytest.raises(FileNotFoundError, match=r"lonely\.json"):
        PhoneWatch(data_file=no_meta)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    shutil.copy(META, tmp_path / "garbage.json")
    with pytest.raises(ValueError, match=r"garbage\.npz.*not a readable npz.*build_sensor_data\.py"):
        PhoneWatch(data_file=garbage)
    shutil.copy(NPZ, tmp_path / "badmeta.npz")
    (tmp_path / "badmeta.json").write_text("{")
    with pytest.raises(ValueError, match=r"badmeta\.json is not valid"):
        PhoneWatch(data_file=tmp_path / "badmeta.npz")
    tampered = dict(raw)
    tampered["phone"] = raw["phone"].copy()
    tampered["phone"][0, 0, 0] += 1
    np.savez_compressed(tmp_path / "tampered.npz", **tampered)
    shutil.copy(META, tmp_path / "tampered.json")
    with pytest.raises(ValueError, match=r"tampered\.npz fails its checksum"):
        PhoneWatch(data_file=tmp_path / "tampered.npz")
    copy = tmp_path / "copy.npz"  # an intact copy elsewhere loads
    shutil.copy(NPZ, copy)
    shutil.copy(META, tmp_path / "copy.json")
    assert len(PhoneWatch(data_file=copy).dataset("older", "test")) == int(
        np.sum(np.isin(subject_ids(raw), PhoneWatch().subjects("older")) & (raw["split"] == 1)))


# ---------------------------------------------------------------- builder
def load_builder():
    return load_script("scripts/build_sensor_data.py")


def test_builder_steps_against_direct_computations():
    b = load_builder()
    rng = np.random.default_rng(0)
    stamps = 1e12 + np.arange(500) * 9.76 + rng.exponential(20, 500)  # late, bursty delivery
    slope, intercept = np.polyfit(np.arange(500), stamps - 1e12, 1)
    fitted = b.regular_times(stamps)  # Unix ms near 1e12 carry about 1e-4 ms of float64 resolution
    np.testing.assert_allclose(fitted - 1e12, intercept + slope * np.arange(500), rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.diff(fitted), slope, rtol=0, atol=3e-4)
    label = np.array([0] * 30 + [2] + [1] * 30 + [3] * 30)  # a one-sample blip at 100 Hz
    assert (b.clean_labels(label, 100.0) == np.array([0] * 31 + [1] * 30 + [3] * 30)).all()
    label = rng.integers(0, 5, 140)
    starts, maj, count = b.windows(label, 50, 25)
    assert starts.tolist() == [0, 25, 50, 75]
    for s, m, c in zip(starts, maj, count):
        values, counts = np.unique(label[s:s + 50], return_counts=True)
        assert c == counts.max() and m == values[counts == counts.max()].min()
    assert [len(b.held_out_executions(list(range(1, n + 1)))) for n in (6, 9, 10, 11)] == [2, 3, 3, 3]


def test_builder_rejects_other_raw_data(tmp_path):
    b = load_builder()
    (tmp_path / "s01").mkdir()
    (tmp_path / "s01" / "s01_01_sp.csv").write_text("x_acc\n1\n")
    with pytest.raises(SystemExit, match="raw data checksum mismatch"):
        b.verify_raw(tmp_path)
    with pytest.raises(SystemExit, match="--archive"):
        b.main(["--archive", str(tmp_path / "missing.tar.xz"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_builder_default_archive_is_beside_the_checkout(tmp_path, monkeypatch):
    b = load_builder()
    assert b.DEFAULT_ARCHIVE == ROOT.parent / "shared" / "data" / "real_small" / "sp_sw_har.tar.xz"
    monkeypatch.setattr(b, "DEFAULT_ARCHIVE", tmp_path / "absent" / "sp_sw_har.tar.xz")
    with pytest.raises(SystemExit, match=r"no --archive given and .*absent.* does not exist; pass --archive"):
        b.main(["--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"raw archive {ARCHIVE} absent (set SP_SW_HAR_ARCHIVE "
                                                      "or put it in ../shared/data/real_small/ beside the checkout)")
def test_rebuild_reproduces_the_packaged_arrays(tmp_path, meta):
    """Rebuilds from the raw archive (about 5-10 s) and compares with the packaged files."""
    load_builder().main(["--archive", str(ARCHIVE), "--out", str(tmp_path)])
    rebuilt = json.loads((tmp_path / "phone_watch.json").read_text())
    assert rebuilt["files"]["arrays_sha256"] == meta["files"]["arrays_sha256"]
    assert hashlib.sha256((tmp_path / "phone_watch.npz").read_bytes()).digest() == hashlib.sha256(
        NPZ.read_bytes()).digest()
    with np.load(tmp_path / "phone_watch.npz") as f:
        assert content_sha256({k: f[k] for k in f.files}) == meta["files"]["arrays_sha256"]
