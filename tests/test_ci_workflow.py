"""The example GitHub Actions workflow stays valid and in sync with the Makefile.

The checks return problems instead of asserting, so the tests below can show each one fails on a
workflow that is wrong in the way it guards against.
"""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "edgeport.yml"
MAKEFILE = (REPO / "Makefile").read_text()
RUN = re.compile(r'make (?P<target>[\w-]+)(?P<assignments>(?: [A-Z][A-Z0-9_]*="[^"]*")*)')
SHARD = re.compile(r"--shard \$\{\{ matrix\.shard \}\}/(?P<n>\d+)")


def _make_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))


def _make_variables(makefile: str) -> set[str]:
    return set(re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", makefile))


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _runs(job: dict) -> list[tuple[str, dict[str, str]]]:
    """Each `run:` step of ``job`` as (make target, {VAR: value}); a step that is not `make ...` raises."""
    runs = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        command = step["run"].strip()
        match = RUN.fullmatch(command)
        assert match, f"workflow step runs {command!r}: call `make TARGET [VAR=\"...\"]` instead"
        assignments = dict(a.split("=", 1) for a in shlex.split(match.group("assignments")))
        runs.append((match.group("target"), assignments))
    return runs


def _step(job: dict, action: str) -> dict:
    return next(s for s in job["steps"] if s.get("uses", "").startswith(f"actions/{action}@"))


def make_problems(wf: dict, makefile: str = MAKEFILE) -> list[str]:
    """Steps that call what the Makefile lacks: an unknown target, a variable it never reads."""
    problems = []
    targets, variables = _make_targets(makefile), _make_variables(makefile)
    for name, job in wf["jobs"].items():
        for step in job["steps"]:
            if ("uses" in step) == ("run" in step):
                problems.append(f"{name}: a step must either use an action or run a command: {step}")
        for target, assignments in _runs(job):
            if target not in targets:
                problems.append(f"{name}: make {target} is not a Makefile target")
            problems += [f"{name}: make {target} {var}=...: the Makefile never reads $({var})"
                         for var in assignments if var not in variables]
    return problems


def shard_problems(wf: dict) -> list[str]:
    """The export matrix and the --shard argument disagree, or the gate job would miss a shard's reports."""
    problems = []
    export, gate = wf["jobs"]["export"], wf["jobs"]["gate"]
    shards = export["strategy"]["matrix"]["shard"]
    args = [a.get("EXPORT_ARGS", "") for target, a in _runs(export) if target == "export-all"]
    if len(args) != 1:
        return [f"export: expected one `make export-all` step, found {len(args)}"]
    match = SHARD.search(args[0])
    if not match:
        return [f"export: EXPORT_ARGS={args[0]!r} has no `--shard ${{{{ matrix.shard }}}}/N`"]
    n = int(match.group("n"))
    if shards != list(range(1, n + 1)):
        problems.append(f"export: matrix.shard {shards} is not 1..{n}, the N of --shard .../{n}")
    step = next(s for s in export["steps"] if "make export-all" in s.get("run", ""))
    if step.get("continue-on-error") is not True:
        problems.append("export: the export step must continue on error (the gate job decides)")
    upload = _step(export, "upload-artifact")
    if upload.get("if") != "always()" or not {"artifacts/*/report.json", "artifacts/*/mobile/"} <= set(
            upload["with"]["path"].split()):
        problems.append("export: upload the reports and mobile bundles with if: always()")
    prefix = upload["with"]["name"].split("${{")[0]
    if not prefix or upload["with"]["name"] != prefix + "${{ matrix.shard }}":
        problems.append(f"export: artifact name {upload['with']['name']!r} must end with the shard number")

    needs = gate.get("needs")
    if "export" not in ([needs] if isinstance(needs, str) else needs or []):
        problems.append("gate: must need the export job")
    if gate.get("if") != "always()":
        problems.append("gate: must run if: always(), so a failed shard still reaches the verdict")
    download = _step(gate, "download-artifact")
    if download["with"].get("pattern") != prefix + "*":
        problems.append(f"gate: downloads {download['with'].get('pattern')!r}, the export uploads {prefix}*")
    runs = _runs(gate)
    if not runs or runs[-1][0] != "gate" or gate["steps"][-1].get("run") is None:
        return problems + ["gate: the job must end with `make gate ...`"]
    folder = download["with"]["path"].rstrip("/")
    if folder not in shlex.split(runs[-1][1].get("GATE_ARGS", "")):
        problems.append(f"gate: GATE_ARGS must name the download folder {folder!r}")
    return problems


def test_workflow_is_valid_and_calls_only_make_targets_and_variables():
    wf = _workflow()
    assert set(wf) >= {"name", True, "jobs"}  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in wf[True]
    assert set(wf["jobs"]) == {"test", "export", "gate"}
    assert make_problems(wf) == []
    assert _runs(wf["jobs"]["test"]) == [("test", {})]
    for job in wf["jobs"].values():
        assert _step(job, "setup-python")["with"]["python-version"] == "3.11"


def test_shards_and_gate_are_in_sync():
    assert shard_problems(_workflow()) == []


def test_the_checks_catch_a_workflow_out_of_sync():
    wf = _workflow()
    export_step = next(s for s in wf["jobs"]["export"]["steps"] if "make export-all" in s.get("run", ""))
    gate_job = wf["jobs"]["gate"]

    def broken(change) -> dict:
        bad = copy.deepcopy(wf)
        change(bad)
        return bad

    def set_run(bad: dict, job: str, old: str, new: str) -> None:
        step = next(s for s in bad["jobs"][job]["steps"] if old in s.get("run", ""))
        step["run"] = step["run"].replace(old, new)

    assert "/2" in export_step["run"]
    assert shard_problems(broken(lambda b: set_run(b, "export", "/2", "/3")))  # N differs from the matrix
    assert shard_problems(broken(lambda b: b["jobs"]["export"]["strategy"]["matrix"].update(shard=[1, 2, 3])))
    assert shard_problems(broken(lambda b: b["jobs"]["gate"].update(needs="test")))
    assert shard_problems(broken(lambda b: b["jobs"]["gate"].pop("if")))
    assert shard_problems(broken(lambda b: _step(b["jobs"]["gate"], "download-artifact")["with"].update(
        pattern="reports-*")))
    assert shard_problems(broken(lambda b: _step(b["jobs"]["export"], "upload-artifact")["with"].update(
        name="edgeport-reports")))
    assert shard_problems(broken(lambda b: b["jobs"]["gate"]["steps"].append({"name": "x", "uses": "a/b@v1"})))
    assert shard_problems(broken(lambda b: set_run(b, "gate", '"shard-reports"', '"elsewhere"')))
    assert make_problems(broken(lambda b: set_run(b, "export", "EXPORT_ARGS", "EXPORT_ARG")))  # unread variable
    assert make_problems(broken(lambda b: set_run(b, "gate", "make gate", "make gates")))  # unknown target
    assert make_problems(wf, MAKEFILE.replace("$(EXPORT_ARGS)", ""))  # the Makefile stops passing it on
    try:
        make_problems(broken(lambda b: set_run(b, "gate", "make gate", "edgeport gate")))
    except AssertionError as exc:
        assert "call `make TARGET" in str(exc)
    else:
        raise AssertionError("a step that does not call make passed the check")
    assert gate_job["steps"][-1]["run"].startswith("make gate")
