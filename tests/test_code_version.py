"""The training-code version of a record: which files it covers, and that it tracks their bytes."""
import shutil

from mmdg import code_version as cv


def _tree(tmp_path):
    root = tmp_path / "mmdg"
    for rel, text in {"train.py": "a = 1\n", "data/x.py": "b = 2\n", "resources/s.csv": "1,2\n",
                      "experiments/collect.py": "c = 3\n", "notebook.py": "d\n", "plots.py": "e\n",
                      "resources/paper_numbers.yaml": "f\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_covers_training_code_and_resources_not_presentation(tmp_path):
    root = _tree(tmp_path)
    (root / "data" / "__pycache__").mkdir()
    (root / "data" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    names = [p.relative_to(root).as_posix() for p in cv.training_files(root)]
    assert names == ["data/x.py", "resources/s.csv", "train.py"]


def test_changes_with_training_code_only(tmp_path):
    root = _tree(tmp_path)
    v0 = cv.code_version(root)
    assert len(v0) == 12 and int(v0, 16) >= 0
    (root / "experiments" / "collect.py").write_text("c = 4\n")
    (root / "plots.py").write_text("changed\n")
    assert cv.code_version(root) == v0
    (root / "data" / "x.py").write_text("b = 3\n")
    v1 = cv.code_version(root)
    assert v1 != v0
    shutil.move(root / "data" / "x.py", root / "data" / "y.py")  # same bytes, other file: another version
    assert cv.code_version(root) not in (v0, v1)


def test_the_package_hash_is_recorded(tmp_path):
    import torch
    from mmdg.train import environment
    assert environment(torch.device("cpu"))["code"] == cv.code_version() == cv.current()
