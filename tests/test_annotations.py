"""The packaged EPIC / HAC split files and their safe, validated readers."""
import shutil
from collections import Counter

import pytest

from mmdg.data import annotations as ann

EPIC_DIR = ann.ANNOTATIONS_DIR / ann.EPIC_SPLITS_FOLDER
HAC_DIR = ann.ANNOTATIONS_DIR / ann.HAC_SPLITS_FOLDER

# Research note §1.7 (counted from the files when they were collected).
EPIC_COUNTS = {
    ("D1", "train"): [421, 383, 231, 128, 223, 71, 42, 44], ("D1", "test"): [124, 104, 52, 34, 66, 13, 20, 22],
    ("D2", "train"): [715, 692, 245, 214, 298, 89, 113, 129], ("D2", "test"): [208, 217, 68, 56, 136, 14, 26, 25],
    ("D3", "train"): [919, 1121, 450, 367, 808, 110, 53, 69], ("D3", "test"): [241, 280, 102, 71, 245, 29, 1, 5],
}
HAC_SIZES = {("human", "train"): 1111, ("human", "test"): 276, ("animal", "train"): 730,
             ("animal", "test"): 176, ("cartoon", "train"): 870, ("cartoon", "test"): 218}


@pytest.mark.parametrize("domain,split", sorted(EPIC_COUNTS))
def test_packaged_epic_splits_have_the_published_class_counts(domain, split):
    segs = ann.read_epic_split(ann.epic_split_file(EPIC_DIR, domain, split))
    counts = Counter(s.label for s in segs)
    assert [counts[c] for c in range(8)] == EPIC_COUNTS[domain, split]
    participant = {"D1": "P08", "D2": "P01", "D3": "P22"}[domain]
    assert all(s.video_id.startswith(participant + "_") for s in segs)


def test_csv_and_pickle_hold_the_same_segments():
    for domain in ("D1", "D3"):
        csv_segs = ann.read_epic_split(EPIC_DIR / f"{domain}_test.csv")
        pkl_segs = ann.read_epic_split(EPIC_DIR / f"{domain}_test.pkl", allow_pickle=True)
        assert csv_segs == pkl_segs


def test_first_epic_row_is_parsed_as_written():
    # D1_train.csv line 2: 12915,P08,P08_01,open fridge,00:00:04.09,00:00:05.84,245,350,open,2
    s = ann.read_epic_split(EPIC_DIR / "D1_train.csv")[0]
    assert (s.uid, s.video_id, s.start_frame, s.stop_frame, s.label) == (12915, "P08_01", 245, 350, 2)
    assert s.start_seconds == pytest.approx(4.09) and s.stop_seconds == pytest.approx(5.84)


def test_pickle_needs_the_opt_in(tmp_path):
    with pytest.raises(ann.AnnotationError, match="allow_pickle"):
        ann.read_epic_split(EPIC_DIR / "D1_test.pkl")
    shutil.copy(EPIC_DIR / "D1_test.pkl", tmp_path / "D1_test.pkl")
    with pytest.raises(ann.AnnotationError, match=r"D1_test\.pkl exists but reading pickles is off"):
        ann.epic_split_file(tmp_path, "D1", "test")
    assert ann.epic_split_file(tmp_path, "D1", "test", allow_pickle=True).name == "D1_test.pkl"


def test_missing_column_names_file_and_column(tmp_path):
    lines = (EPIC_DIR / "D1_test.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("verb_class")
    rows = [",".join(v for j, v in enumerate(line.split(",")) if j != drop) for line in lines[:5]]
    bad = tmp_path / "D1_test.csv"
    bad.write_text("\n".join(rows) + "\n")
    with pytest.raises(ann.AnnotationError, match=r"D1_test\.csv: missing column\(s\) \['verb_class'\]"):
        ann.read_epic_split(bad)


def test_bad_values_name_the_row(tmp_path):
    header = "uid,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame,verb_class"
    cases = {"1,P08_01,00:00:01.00,00:00:02.00,60,120,8": "verb_class 8 outside 0..7",
             "1,P08_01,00:00:01.00,00:00:02.00,120,60,1": "expected 1 <= start_frame < stop_frame",
             "1,P08_01,1.5s,00:00:02.00,60,120,1": "is not a timestamp",
             "1,../P08_01,00:00:01.00,00:00:02.00,60,120,1": "not a plain folder name"}
    for row, message in cases.items():
        f = tmp_path / "x.csv"
        f.write_text(f"{header}\n1,P08_01,00:00:00.00,00:00:01.00,1,60,0\n{row}\n")
        with pytest.raises(ann.AnnotationError, match=f"x.csv row 2.*{message}"):
            ann.read_epic_split(f)


def test_timestamps():
    assert ann.parse_timestamp("00:01:02.50") == pytest.approx(62.5)
    assert ann.parse_timestamp("01:00:00.00") == pytest.approx(3600.0)
    with pytest.raises(ann.AnnotationError):
        ann.parse_timestamp("62.5")


@pytest.mark.parametrize("domain,split", sorted(HAC_SIZES))
def test_packaged_hac_lists(domain, split):
    clips = ann.read_hac_list(ann.hac_split_file(HAC_DIR, domain, split))
    assert len(clips) == HAC_SIZES[domain, split]
    assert {c.label for c in clips} == set(range(7))


def test_hac_human_lists_share_24_clips():
    train = {c.file for c in ann.read_hac_list(HAC_DIR / "HAC_train_only_human.csv")}
    test = {c.file for c in ann.read_hac_list(HAC_DIR / "HAC_test_only_human.csv")}
    assert len(train & test) == 24


def test_hac_bad_rows(tmp_path):
    f = tmp_path / "HAC_train_only_human.csv"
    for text, message in {"a.mp4,1,2\n": "3 column", "a.avi,1\n": "not a plain <name>.mp4",
                          "a.mp4,7\n": "label 7 outside 0..6", "a.mp4,x\n": "not an integer"}.items():
        f.write_text("ok.mp4,0\n" + text)
        with pytest.raises(ann.AnnotationError, match=f"row 2.*{message}"):
            ann.read_hac_list(f)


def test_splits_dir_resolution(tmp_path):
    assert ann.resolve_splits_dir(None, None, ann.EPIC_SPLITS_FOLDER, "D*_*.*") == EPIC_DIR
    assert ann.resolve_splits_dir(None, tmp_path, ann.EPIC_SPLITS_FOLDER, "D*_*.*") == EPIC_DIR
    (tmp_path / ann.EPIC_SPLITS_FOLDER).mkdir()
    (tmp_path / ann.EPIC_SPLITS_FOLDER / "D1_train.csv").write_text("x")
    assert ann.resolve_splits_dir(None, tmp_path, ann.EPIC_SPLITS_FOLDER, "D*_*.*") == tmp_path / ann.EPIC_SPLITS_FOLDER
    with pytest.raises(ann.AnnotationError, match="not a directory"):
        ann.resolve_splits_dir(tmp_path / "nope", None, ann.EPIC_SPLITS_FOLDER, "D*_*.*")
