"""What leaves the build machine carries no absolute path of it (issue: portable hand-off)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import REPO

from edgeport.cli import main
from edgeport.portable import relative_path, scrub, scrub_prefixes


def test_scrub_makes_known_folders_relative_and_leaves_lookalikes():
    prefixes = scrub_prefixes(["/build/proj", "/build/proj/artifacts/m"])
    text = {"e": ["log: /build/proj/artifacts/m/.work/x.log", "src /build/proj/models/a", "/build/proj",
                  "/build/project-2/x"]}
    assert scrub(text, prefixes) == {"e": ["log: .work/x.log", "src models/a", ".", "/build/project-2/x"]}
    assert relative_path("/build/data/eval", "/build/proj") == "../data/eval"


def test_export_all_artifacts_hold_no_build_path(exported_tiny, tiny_vit, faces_dir, calib_dir, tmp_path):
    """A project laid out like this repository: every file export-all writes is free of its root."""
    project = tmp_path / "project"
    shutil.copytree(tiny_vit, project / "models" / "tiny")
    shutil.copytree(faces_dir, project / "data" / "eval")
    shutil.copytree(calib_dir, project / "data" / "calib")
    # the session's export of the same weights: export-all reuses it and rewrites the manifest
    shutil.copytree(exported_tiny, project / "artifacts" / "tiny")
    config = project / "edgeport.toml"
    config.write_text('[settings]\nlatency_runs = 2\nwarmup = 1\n'
                      '[budgets.int8]\nmin_agreement = 0.0\nmax_accuracy_drop = 100.0\n'
                      '[[models]]\nname = "tiny"\nsource = "models/tiny"\neval = "data/eval"\n'
                      'calibration = "data/calib"\nprecision_search = false\n')  # as exported_tiny: reused
    assert main(["export-all", "--config", str(config), "--no-progress"]) == 0
    out = project / "artifacts" / "tiny"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "report.json", "report.md", "report.html", "model.json", "README.md"} <= \
        {p.name for p in written}
    roots = [str(project), str(project.resolve()), str(REPO), str(tmp_path)]
    leaks = [(str(p.relative_to(out)), root) for p in written for root in roots if root.encode() in p.read_bytes()]
    assert leaks == []
    manifest = json.loads((out / "manifest.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert manifest["source"]["path"] == report["source"]["path"] == report["reference"]["path"] == "models/tiny"
    assert manifest["project_dir"] == "../.." and manifest["calibration"]["path"] == "data/calib"
    assert all(p.startswith("data/calib/") for p in manifest["sample_images"])
    assert report["eval_set"]["path"] == "data/eval"
    assert {v["path"] for v in report["variants"]} == {v["path"] for v in manifest["variants"]}
    model = json.loads((out / "mobile" / "model.json").read_text())
    assert model["source"]["path"] == "models/tiny"
    # The recorded relative paths are what validate resolves: it runs from another working folder.
    assert main(["validate", str(out), "--eval", str(project / "data" / "eval"), "--no-progress",
                 "--config", str(config), "--latency-runs", "2"]) == 0
