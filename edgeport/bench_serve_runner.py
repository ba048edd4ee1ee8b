"""The "runner alone" of `edgeport bench-serve`: the served variant's runner without a server.

Run as ``python -m edgeport.bench_serve_runner SPEC.json OUT.json``, in a process of its own
that `edgeport bench-serve` pins to the server's cores, with the server's ``--threads``: what
the server's runner could do if serving cost nothing, measured in the same run on the same
machine, so that the server's throughput can be read as a share of it (issue #35).

Three measurements, each after a warm-up and bounded in time (``seconds``, split into
``repetitions`` timed runs whose median is reported):

- **batch 1**: the runner on one preprocessed image at a time (what one client gets at best);
- **max batch**: the runner on batches of the server's ``--max-batch`` (the most the batcher
  can make of many clients);
- **request**: decode + preprocess + runner at batch 1 from each image's raw bytes, timed
  apart, so the report shows where a request's time goes without HTTP.

With ``only_batch`` set, the one measurement at that batch instead (``batch``): what
`edgeport bench-serve` takes just before each closed-loop phase, so that a phase's share of the
runner alone compares figures seconds apart rather than minutes (the machine drifts).

Images are decoded and preprocessed as the server does (the served model's
``Preprocessing.open`` on the bytes, with its decode mode, then its steps); the variant is chosen as the server
chooses it (``serving.selection.select_variant``).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeport.runtimes.machine import affinity

if TYPE_CHECKING:
    from edgeport.validation.preprocess import Preprocessing

WARMUP_RUNS = 3  # per batch shape, before timing: the first runs pay for allocation and kernel choice


@dataclass
class RunnerSpec:
    """What to time (see the module docstring)."""

    model_dir: str
    images: list[str]  # the request images, as sent to the server
    variant: str | None = None  # None: the server's own choice (the fastest that passed validation)
    threads: int = 2
    max_batch: int = 8
    seconds: float = 3.0  # per measurement
    repetitions: int = 5
    only_batch: int | None = None  # measure this batch alone (result "batch"), not the three above


def timed_rates(step: Callable[[], int], seconds: float, repetitions: int) -> list[float]:
    """Images per second of each of ``repetitions`` timed runs of ``step`` (which returns how
    many images it did); each run lasts about ``seconds / repetitions``, and at least one step."""
    slot = seconds / max(1, repetitions)
    rates = []
    for _ in range(max(1, repetitions)):
        done, start = 0, time.perf_counter()
        while True:
            done += step()
            elapsed = time.perf_counter() - start
            if elapsed >= slot:
                break
        rates.append(done / elapsed)
    return rates


def _figures(rates: list[float], batch: int) -> dict[str, Any]:
    """The median of ``rates`` as images/s and ms per image, with each repetition's rate."""
    median = statistics.median(rates)
    return {"batch": batch, "images_per_s": round(median, 2), "ms_per_image": round(1000.0 / median, 3),
            "images_per_s_by_repetition": [round(r, 2) for r in rates]}


def run_runner(spec: RunnerSpec) -> dict[str, Any]:
    """Time the served variant's runner as the module docstring says; returns the figures."""
    from edgeport.runtimes import runner_class
    from edgeport.serving.selection import select_variant

    model = select_variant(spec.model_dir, spec.variant)
    bodies = [Path(p).read_bytes() for p in spec.images]
    if not bodies:
        raise ValueError("no images to time the runner on")
    pixels = [model.preprocessing(model.preprocessing.open(b)) for b in bodies]
    b = max(1, spec.max_batch)
    runner = runner_class(model.runtime)(model.path, threads=spec.threads)
    runner.activate()
    try:
        result: dict[str, Any] = {
            "variant": model.variant, "runtime": model.runtime, "artifact": model.path.name,
            "threads": spec.threads, "images": len(bodies),
            "cores": affinity(),
            "seconds_per_measurement": spec.seconds, "repetitions": spec.repetitions}
        if spec.only_batch is not None:
            result["batch"] = _batch_figures(runner.infer, pixels, max(1, spec.only_batch), spec)
            return result
        result["batch_1"] = _batch_figures(runner.infer, pixels, 1, spec)
        # at max batch 1 the server never batches: the same figure, not a second measurement
        result["max_batch"] = dict(result["batch_1"]) if b == 1 else _batch_figures(runner.infer, pixels, b, spec)
        result["request"] = _request_path(runner.infer, model.preprocessing, bodies, spec)
    finally:
        runner.deactivate()
    return result


def _batch_figures(infer: Callable[[np.ndarray], np.ndarray], pixels: list[np.ndarray], b: int,
                   spec: RunnerSpec) -> dict[str, Any]:
    """The runner on batches of ``b`` of ``pixels`` (each image in turn), after a warm-up."""
    # stacked beforehand: the runner alone is timed, not np.stack (the server's batcher pays that)
    batches = [np.stack([pixels[(i * b + j) % len(pixels)] for j in range(b)])
               for i in range(max(1, len(pixels) // b))]
    for i in range(WARMUP_RUNS):
        infer(batches[i % len(batches)])
    turn = [0]  # which batch comes next: every one in turn

    def step() -> int:
        infer(batches[turn[0] % len(batches)])
        turn[0] += 1
        return b

    return _figures(timed_rates(step, spec.seconds, spec.repetitions), b)


def _request_path(infer: Callable[[np.ndarray], np.ndarray], preprocessing: Preprocessing,
                  bodies: list[bytes], spec: RunnerSpec) -> dict[str, Any]:
    """Decode + preprocess + runner at batch 1 per image from the raw bytes, the two parts timed apart."""
    parts: list[tuple[float, float]] = []  # (decode + preprocess, runner) seconds of each image of a repetition
    turn = [0]

    def one() -> int:
        t0 = time.perf_counter()
        x = preprocessing(preprocessing.open(bodies[turn[0] % len(bodies)]))[None]
        t1 = time.perf_counter()
        infer(x)
        parts.append((t1 - t0, time.perf_counter() - t1))
        turn[0] += 1
        return 1

    one()  # warm-up of the decoder and of the preprocessing
    rates, per_rep = [], []  # per repetition: images/s, and the mean of each part
    for _ in range(max(1, spec.repetitions)):
        parts.clear()
        rates += timed_rates(one, spec.seconds / max(1, spec.repetitions), 1)
        per_rep.append((statistics.fmean(p[0] for p in parts), statistics.fmean(p[1] for p in parts)))
    figures = _figures(rates, 1)
    figures["decode_preprocess_ms"] = round(1000.0 * statistics.median(d for d, _ in per_rep), 3)
    figures["runner_ms"] = round(1000.0 * statistics.median(r for _, r in per_rep), 3)
    return figures


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    spec = RunnerSpec(**json.loads(Path(spec_path).read_text()))
    result = run_runner(spec)
    result["spec"] = asdict(spec) | {"images": len(spec.images)}
    Path(out_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
