"""`make test` provisions what the suite needs (scripts/provision-test.sh), or says the one command to run."""
from __future__ import annotations

import os
import subprocess

from conftest import REPO

SCRIPT = REPO / "scripts" / "provision-test.sh"
BASH = "/bin/bash"


def _run(tmp_path, **env):
    empty = tmp_path / "bin"  # a PATH with no chromium and no apt-get
    empty.mkdir(exist_ok=True)
    base = {"PATH": str(empty), "HOME": str(tmp_path)}
    return subprocess.run([BASH, str(SCRIPT)], env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_without_chromium_or_apt_it_stops_with_the_command_to_run(tmp_path):
    run = _run(tmp_path)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install -y chromium" in lines[0] and "EDGEPORT_CHROMIUM" in lines[0]


def test_a_chromium_on_the_path_or_named_is_used_as_is(tmp_path):
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    assert _run(tmp_path).returncode == 0
    assert _run(tmp_path, EDGEPORT_CHROMIUM=str(fake)).returncode == 0
    bad = _run(tmp_path, EDGEPORT_CHROMIUM=str(tmp_path / "nope"))
    assert bad.returncode == 1 and "is not an executable" in bad.stderr


def test_make_test_runs_the_provisioning_first():
    makefile = (REPO / "Makefile").read_text()
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "test-deps" in test_rule.split(":", 1)[1]
    assert "scripts/provision-test.sh" in makefile
    assert os.access(SCRIPT, os.X_OK)
    assert "make test" in (REPO / ".ci" / "run").read_text()
