"""Class folders map to labels case-insensitively; bad files are reported and counted."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from validation.dataset import LabelMappingError, load_eval_arrays, map_folders_to_labels, scan_eval_set
from validation.preprocess import Preprocessing


def test_folders_map_case_insensitively():
    assert map_folders_to_labels(["Male", "FEMALE"], ["female", "male"]) == {"FEMALE": 0, "Male": 1}


def test_unmatched_folders_are_all_listed():
    with pytest.raises(LabelMappingError) as err:
        map_folders_to_labels(["cats", "male", "dogs"], ["female", "male"])
    msg = str(err.value)
    assert "'cats'" in msg and "'dogs'" in msg and "female, male" in msg
    assert "'male'" not in msg


def test_scan_rejects_unknown_folder_before_work(tmp_path):
    (tmp_path / "female").mkdir()
    (tmp_path / "unknown").mkdir()
    with pytest.raises(LabelMappingError, match="'unknown'"):
        scan_eval_set(tmp_path, ["female", "male"])


def test_bad_files_are_skipped_with_reasons(tmp_path, faces_dir):
    root = tmp_path / "eval"
    shutil.copytree(faces_dir, root)
    (root / "male" / "empty.jpg").write_bytes(b"")
    (root / "male" / "text.jpg").write_text("not an image")
    good = next((root / "female").glob("*.jpg")).read_bytes()
    (root / "female" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "female" / ".hidden.jpg").write_bytes(good)
    (root / "female" / "notes.txt").write_text("x")

    ev = scan_eval_set(root, ["female", "male"])
    inputs, labels, paths = load_eval_arrays(ev, Preprocessing(height=16, width=16), progress=False)

    assert len(inputs) == len(labels) == len(paths) == 8
    assert np.isfinite(inputs).all()
    reasons = {s.path: s.reason for s in ev.skipped}
    assert set(reasons) == {"male/empty.jpg", "male/text.jpg", "female/truncated.jpg",
                            "female/.hidden.jpg", "female/notes.txt"}
    assert "hidden" in reasons["female/.hidden.jpg"]
    assert "truncated" in reasons["female/truncated.jpg"] or "corrupt" in reasons["female/truncated.jpg"]
