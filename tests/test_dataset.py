"""Class folders map to labels case-insensitively; bad files are reported and counted."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeport.validation.dataset import LabelMappingError, load_eval_arrays, map_folders_to_labels, scan_eval_set
from edgeport.validation.preprocess import Preprocessing

REPO = Path(__file__).resolve().parent.parent


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


def test_label_map_renames_and_ignores_folders():
    labels = ["female", "male"]
    mapping = map_folders_to_labels(["Women", "Men", "misc"], labels, {"women": "female", "Men": "MALE", "misc": "ignore"})
    assert mapping == {"Women": 0, "Men": 1}
    with pytest.raises(LabelMappingError, match="Men=man names no label"):
        map_folders_to_labels(["Men"], labels, {"Men": "man"})
    with pytest.raises(LabelMappingError, match="--label-map FOLDER=LABEL"):
        map_folders_to_labels(["Women", "misc"], labels, {"Women": "female"})


def test_validate_with_label_map_and_export_all_refuses_unmapped_folders_before_work(
        exported_copy, faces_dir, tmp_path, capsys):
    import json

    from edgeport.cli import main

    ev = tmp_path / "ev"
    shutil.copytree(faces_dir / "female", ev / "Women")
    shutil.copytree(faces_dir / "male", ev / "Men")
    (ev / "misc").mkdir()
    (ev / "misc" / "cat.jpg").write_bytes((ev / "Men").joinpath(next(iter(sorted(p.name for p in (ev / "Men").iterdir())))).read_bytes())
    cfg = tmp_path / "c.toml"
    cfg.write_text("[budgets.int8]\nmin_agreement = 0.0\nmax_accuracy_drop = 100.0\n")
    base = ["validate", str(exported_copy), "--eval", str(ev), "--no-progress", "--config", str(cfg), "--latency-runs", "2"]
    assert main(base) == 2
    assert "'Men', 'Women', 'misc'" in capsys.readouterr().err
    assert main([*base, "--label-map", "Women=female", "--label-map", "Men=male", "--label-map", "misc=ignore"]) == 0
    report = json.loads((exported_copy / "report.json").read_text())
    assert report["eval_set"]["images"] == 8 and report["eval_set"]["ignored_folders"] == ["misc"]
    assert report["eval_set"]["folders"] == {"Men": "male", "Women": "female"}

    models = REPO / "models" / "gender-vit"
    (tmp_path / "all.toml").write_text(f'[settings]\nartifacts = "{tmp_path / "arts"}"\n[[models]]\nname = "g"\n'
                                       f'source = "{models}"\neval = "{ev}"\n')
    assert main(["export-all", "--config", str(tmp_path / "all.toml"), "--no-progress"]) == 2
    assert not (tmp_path / "arts").exists()  # nothing was exported
