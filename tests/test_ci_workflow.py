"""The example GitHub Actions workflow stays valid and in sync with the Makefile."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "edgeport.yml"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), flags=re.M))


def test_workflow_is_valid_and_calls_only_make_targets():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert set(wf) >= {"name", True, "jobs"}  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in wf[True]
    (job,) = wf["jobs"].values()
    steps = job["steps"]
    assert all(("uses" in s) != ("run" in s) for s in steps), "each step either uses an action or runs a command"
    runs = [s["run"].strip() for s in steps if "run" in s]
    targets = _make_targets()
    for command in runs:
        match = re.fullmatch(r"make ([\w-]+)", command)
        assert match, f"workflow step runs {command!r}: call a Makefile target instead"
        assert match.group(1) in targets, f"make {match.group(1)} is not a Makefile target"
    assert runs[-1] == "make gate", "the job must end by failing on the gate"
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "mobile/" in upload["with"]["path"]
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
