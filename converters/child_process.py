"""Running a tool in a child process: its wall time, the peak memory of its process tree,
a heartbeat line on long runs, and no orphan left behind when we stop or are killed.

Used for every export step (edgeport.stage), for onnx2tf, and for the bench's plain-tool runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

NO_PROGRESS_ENV = "EDGEPORT_NO_PROGRESS"


def measure_command(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdout: Any = None,
    label: str = "",
    poll_s: float = 0.1,
    heartbeat_s: float | None = 60.0,
) -> tuple[float, int, int]:
    """Run ``cmd``; return (wall seconds, peak resident bytes of it and its children, exit code).

    A "still running" line is printed every ``heartbeat_s`` seconds, unless it is None or
    NO_PROGRESS_ENV is set (``--no-progress``: export steps run tools in grandchildren,
    which inherit the variable rather than an argument).
    """
    import psutil

    if os.environ.get(NO_PROGRESS_ENV):
        heartbeat_s = None

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                            preexec_fn=_die_with_parent)
    peak = 0
    last_beat = start
    try:
        parent = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, _tree_rss(parent))
            time.sleep(poll_s)
            if heartbeat_s is not None and time.perf_counter() - last_beat >= heartbeat_s:
                last_beat = time.perf_counter()
                print(f"    {label or cmd[0]}: still running ({last_beat - start:.0f} s, "
                      f"{peak / 2**30:.1f} GiB peak)", flush=True)
    except BaseException:  # Ctrl-C: do not leave a converter running
        _kill_tree(proc)
        raise
    return time.perf_counter() - start, peak, proc.returncode


def _die_with_parent() -> None:
    """In the child: be killed when the parent dies (Linux), so `kill -9 edgeport` leaves no
    converter running on and racing the next run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tree_rss(proc: Any) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except psutil.Error:
        pass
    proc.kill()
    proc.wait()
