"""Run one artifact on a saved input batch, in its own process.

The harness starts one worker per variant so that a runtime that aborts the process
(some TFLite files SIGABRT inside the interpreter) fails only that variant, and so that
each runtime's memory is returned when it is done.

    python -m edgeport.validation.worker --runtime tflite --path model.tflite \
        --inputs inputs.npy --out result.npz
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--revision", default=None)
    parser.add_argument("--allow-pickle", action="store_true", help="torch: accept pickle weights")
    parser.add_argument("--inputs", required=True, help="float32 NCHW .npy")
    parser.add_argument("--out", required=True, help="output .npz (logits, latency_s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--throughput-batch", type=int, default=0,
                        help="also time --throughput-runs runs of this batch size (0: off)")
    parser.add_argument("--throughput-runs", type=int, default=5)
    args = parser.parse_args(argv)

    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgeport.runtimes import RunnerError, runner_class
    from edgeport.runtimes.lean_start import hide_unused_packages

    cls = runner_class(args.runtime)
    hide_unused_packages(cls.unused_packages)  # this process runs this runner and nothing else
    inputs = np.load(args.inputs, mmap_mode="r")
    kwargs = {"revision": args.revision, "allow_pickle": args.allow_pickle} if args.runtime == "torch" else {}
    try:
        with cls(args.path, threads=args.threads, **kwargs) as runner:
            logits = np.concatenate(
                [runner.infer(np.asarray(inputs[i : i + args.batch])) for i in range(0, len(inputs), args.batch)]
            )
            one = np.asarray(inputs[:1])
            for _ in range(args.warmup):
                runner.infer(one)
            latency = []
            for _ in range(args.runs):
                start = time.perf_counter()
                runner.infer(one)
                latency.append(time.perf_counter() - start)
            batch_seconds = []
            if args.throughput_batch:
                reps = -(-args.throughput_batch // len(inputs))  # repeat the inputs up to the batch size
                big = np.concatenate([np.asarray(inputs)] * reps)[: args.throughput_batch]
                runner.infer(big)
                for _ in range(args.throughput_runs):
                    start = time.perf_counter()
                    runner.infer(big)
                    batch_seconds.append(time.perf_counter() - start)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tmp = args.out + ".partial.npz"
    np.savez(tmp, logits=logits, latency_s=np.asarray(latency), batch_s=np.asarray(batch_seconds),
             batch_size=np.asarray(args.throughput_batch))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
