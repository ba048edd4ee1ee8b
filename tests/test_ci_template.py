"""The workflow template users copy (deploy/ci/github-workflow.yml), run step by step in a scratch
repository of a user's own: `edgeport init`, a model folder, evaluation and calibration images,
no Makefile and no checkout of edgeport. Its install steps are checked, not run (they need the
package index; `make check-install` runs the same installs); every other `run:` step runs as
written with this environment's `edgeport`, and the upload/download actions are played by copying
what their `path:` globs match, as the actions do (paths below the files' common folder)."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO

TEMPLATE = REPO / "deploy" / "ci" / "github-workflow.yml"
LAST_STDERR: list[str] = []  # what each `run:` step wrote to stderr, in order


def _expand(text: str, matrix: dict[str, object]) -> str:
    def value(match: re.Match) -> str:
        expr = match.group(1).strip()
        assert expr.startswith("matrix."), f"unexpected expression ${{{{ {expr} }}}}"
        return str(matrix[expr.removeprefix("matrix.")])
    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def _upload(step: dict, cwd: Path, store: Path, matrix: dict[str, object]) -> None:
    name = _expand(step["with"]["name"], matrix)
    patterns = step["with"]["path"].split()
    files: list[Path] = []
    for pattern in patterns:
        for hit in glob.glob(str(cwd / pattern)):
            hit = Path(hit)
            files += [p for p in hit.rglob("*") if p.is_file()] if hit.is_dir() else [hit]
    if not files:
        return  # if-no-files-found: warn
    # the artifact's root: the least common ancestor of the search paths (each up to its first wildcard)
    fixed = [str(cwd / Path(*[part for part in _until_wildcard(Path(p).parts)])) for p in patterns]
    root = Path(os.path.commonpath(fixed))
    for f in files:
        dest = store / name / f.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)


def _until_wildcard(parts: tuple[str, ...]) -> list[str]:
    kept = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        kept.append(part)
    return kept


def _download(step: dict, cwd: Path, store: Path) -> None:
    pattern = step["with"]["pattern"].replace("*", ".*")
    for artifact in store.iterdir():
        if re.fullmatch(pattern, artifact.name):
            shutil.copytree(artifact, cwd / step["with"]["path"] / artifact.name)


def _run_job(job: dict, repo: Path, store: Path, env: dict[str, str], matrix: dict[str, object]) -> list[int]:
    """The job's steps in order, on a runner of its own (a fresh copy of ``repo``, as each job gets a
    fresh checkout); the exit status of each `run:` step that ran."""
    cwd = repo.parent / ("runner-" + "-".join(f"{k}{v}" for k, v in matrix.items()) if matrix else "runner")
    shutil.rmtree(cwd, ignore_errors=True)
    shutil.copytree(repo, cwd)
    statuses = []
    for step in job["steps"]:
        uses = step.get("uses", "")
        if uses.startswith(("actions/checkout@", "actions/setup-python@")):
            continue  # the scratch repository is the checkout; this interpreter is the Python
        if uses.startswith("actions/upload-artifact@"):
            _upload(step, cwd, store, matrix)
            continue
        if uses.startswith("actions/download-artifact@"):
            _download(step, cwd, store)
            continue
        assert not uses, f"an action the template test does not play: {uses}"
        command = _expand(step["run"], matrix)
        if "pip install" in command:
            # checked, not run: every line installs from the variables the template pins
            for line in command.strip().splitlines():
                assert line.startswith("python -m pip install "), line
            assert re.search(r'"\$EDGEPORT(_CORE)?"', command) and "make " not in command
            continue
        assert "make " not in command, "the template must call the edgeport CLI, not a Makefile"
        proc = subprocess.run(["bash", "-e", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)
        assert step.get("continue-on-error") or proc.returncode == 0 or command.startswith("edgeport gate"), \
            f"{step.get('name')}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        statuses.append(proc.returncode)
        LAST_STDERR.append(proc.stderr)
    return statuses


def _scratch_repository(root: Path, tiny_vit: Path, faces_dir: Path, calib_dir: Path, env: dict[str, str]) -> None:
    shutil.copytree(tiny_vit, root / "models" / "tiny-vit")
    shutil.copytree(faces_dir, root / "data" / "eval")
    shutil.copytree(calib_dir, root / "data" / "calib")
    subprocess.run([sys.executable, "-m", "edgeport", "init", "models/tiny-vit"], cwd=root, env=env, check=True,
                   capture_output=True)
    # two fast variants, so that the test stays short; the rest of the file is init's own
    config = (root / "edgeport.toml").read_text()
    (root / "edgeport.toml").write_text(config.replace('[settings]\n', '[settings]\nvariants = ["onnx-fp32"]\n'
                                                                       'latency_runs = 3\n', 1))


def test_the_template_runs_in_a_users_repository(tiny_vit, faces_dir, calib_dir, tmp_path):
    workflow = yaml.safe_load(TEMPLATE.read_text())
    root, store = tmp_path / "repo", tmp_path / "artifact-store"
    root.mkdir()
    store.mkdir()
    env = {**os.environ, **{k: str(v) for k, v in workflow["env"].items()},
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "USE_TF": "0"}
    _scratch_repository(root, tiny_vit, faces_dir, calib_dir, env)
    assert workflow["env"]["EDGEPORT"].startswith("edgeport[") and "==" in workflow["env"]["EDGEPORT"]
    export = workflow["jobs"]["export"]
    shards = export["strategy"]["matrix"]["shard"]
    assert f"/{len(shards)}" in next(s["run"] for s in export["steps"] if "export-all" in s.get("run", ""))
    for shard in shards:
        assert _run_job(export, root, store, env, {"shard": shard}) == [0]
    # exactly one shard holds the model's reports (kept below its model folder), as the gate job downloads them
    reports = sorted(store.glob("edgeport-reports-*/tiny-vit/report.json"))
    assert len(reports) == 1 and (reports[0].parent / "report.md").is_file()
    assert (reports[0].parent / "manifest.json").is_file()
    gate = workflow["jobs"]["gate"]
    assert gate["needs"] == "export" and gate["if"] == "always()"
    # the gate job installs the core alone (no extras); gating imports nothing the core lacks
    assert re.fullmatch(r"edgeport==[\d.]+", workflow["env"]["EDGEPORT_CORE"])
    assert '"$EDGEPORT_CORE"' in next(s["run"] for s in gate["steps"] if "pip install" in s.get("run", ""))
    assert _run_job(gate, root, store, {**env, "PYTHONPROFILEIMPORTTIME": "1"}, {}) == [0]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in LAST_STDERR[-1].splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "edgeport" in imported and not imported & {"torch", "transformers", "tensorflow", "optimum", "onnx"}

    # the same workflow fails the build when a budget is missed ...
    shutil.rmtree(store)
    store.mkdir()
    config = root / "edgeport.toml"
    config.write_text(re.sub(r"max_abs_diff = [0-9.e-]+", "max_abs_diff = 1e-12", config.read_text()))
    holder = int(reports[0].parts[-3].rsplit("-", 1)[1])  # the shard the model falls in (its name decides)
    _run_job(export, root, store, env, {"shard": holder})
    assert _run_job(gate, root, store, env, {}) == [1]
    # ... and when a configured model has no report (its shard crashed before writing one): the
    # only report downloaded is another model's, passing
    (report_dir,) = store.glob("edgeport-reports-*/tiny-vit")
    data = json.loads((report_dir / "report.json").read_text())
    data.update(model="other", passed=True)
    for v in data["variants"]:
        v.update(passed=True, status="passed", failures=[])
    shutil.rmtree(report_dir)
    (store / "edgeport-reports-1" / "other").mkdir(parents=True, exist_ok=True)
    (store / "edgeport-reports-1" / "other" / "report.json").write_text(json.dumps(data))
    assert _run_job(gate, root, store, env, {}) == [1]
