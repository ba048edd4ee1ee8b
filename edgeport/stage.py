"""Run one conversion step in its own process, and measure its wall time and peak memory.

Why a process per step: converting a ViT-B/16 holds gigabytes (PyTorch tracing, the
TensorFlow graph, calibration tensors) that Python allocators never hand back, so steps
run one after another in one process would stack their peaks; a child process returns
its memory when it exits, its peak can be measured on its own, and a converter that
aborts the interpreter (SIGABRT inside a native library) fails only its own step.

The parent writes the ExportContext as JSON + .npz (no pickle) and polls the resident
memory of the child and its descendants (onnx2tf runs one level further down).

    python -m edgeport.stage CONTEXT_DIR STEP
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.converters.child_process import NO_PROGRESS_ENV, measure_command

_ARRAYS = ("calibration_nchw", "calibration_labels")
_PATHS = ("out_dir", "work_dir")


@dataclass
class StageResult:
    """What one step produced: manifest settings or an error, and what it cost."""

    name: str
    seconds: float
    peak_rss_bytes: int
    settings: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": round(self.seconds, 2),
                "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1), "error": self.error}


def save_context(ctx: Any, folder: Path) -> None:
    """Write an ExportContext to ``folder`` (context.json + arrays.npz)."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {}
    arrays = {}
    for f in dataclasses.fields(ctx):
        value = getattr(ctx, f.name)
        if f.name in _ARRAYS:
            if value is not None:
                arrays[f.name] = value
        elif f.name in _PATHS:
            fields[f.name] = str(value)
        elif f.name == "sample_images":
            fields[f.name] = [str(p) for p in value]
        else:
            fields[f.name] = list(value) if isinstance(value, tuple) else value
    (folder / "context.json").write_text(json.dumps(fields, indent=1))
    np.savez(folder / "arrays.npz", **arrays)


def load_context(folder: Path) -> Any:
    from edgeport.variants import ExportContext

    fields = json.loads((folder / "context.json").read_text())
    for name in _PATHS:
        fields[name] = Path(fields[name])
    fields["sample_images"] = [Path(p) for p in fields["sample_images"]]
    with np.load(folder / "arrays.npz", allow_pickle=False) as data:
        for name in _ARRAYS:
            fields[name] = data[name] if name in data.files else None
    return ExportContext(**fields)


def run_stage(step: str, context_dir: Path, *, heartbeat_s: float = 60.0, progress: bool = True) -> StageResult:
    """Run step ``step`` (a variant name, a key of ``edgeport.variants.STEPS``) in a child process.

    ``progress=False``: no heartbeat lines, here or from the tools the step runs.
    """
    result_path = context_dir / f"{step}.result.json"
    result_path.unlink(missing_ok=True)
    env = dict(os.environ, USE_TF="0", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    if not progress:
        env[NO_PROGRESS_ENV] = "1"
    seconds, peak, code = measure_command([sys.executable, "-m", "edgeport.stage", str(context_dir), step],
                                          env=env, label=step,
                                          heartbeat_s=heartbeat_s if progress else None)
    if result_path.exists() and code == 0:
        data = json.loads(result_path.read_text())
        return StageResult(step, seconds, peak, settings=data.get("settings"), error=data.get("error"))
    return StageResult(step, seconds, peak, error=_describe_exit(code))


def run_stage_in_process(step: str, ctx: Any) -> StageResult:
    """Run ``step`` in this process (debugging, and tests that patch a converter).

    Peak memory is not measured here (reported as 0): only a child process has a peak of its own.
    """
    from edgeport.variants import STEPS

    start = time.perf_counter()
    try:
        settings = STEPS[step](ctx)
    except Exception as exc:  # recorded by the caller, like a child's failure
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        (ctx.work_dir / f"{step}.error.log").write_text(traceback.format_exc())
        return StageResult(step, time.perf_counter() - start, 0, error=_error_text(exc))
    return StageResult(step, time.perf_counter() - start, 0, settings=settings)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _describe_exit(code: int) -> str:
    if code is not None and code < 0:
        try:
            return f"converter process crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"converter process killed by signal {-code}"
    return f"converter process exited with status {code} without a result"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder, step = Path(argv[0]), argv[1]
    from edgeport.runtimes.lean_start import hide_unused_packages
    from edgeport.variants import STEPS, VARIANTS

    if step not in STEPS:
        print(f"unknown step {step!r}; known: {', '.join(STEPS)}", file=sys.stderr)
        return 2
    hide_unused_packages(VARIANTS[step].unused_packages)  # this process runs this step alone
    result = run_stage_in_process(step, load_context(folder))
    out = {"error": result.error} if result.error else {"settings": result.settings}
    tmp = folder / f".{step}.result.json.tmp"
    tmp.write_text(json.dumps(out, default=str))
    os.replace(tmp, folder / f"{step}.result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
