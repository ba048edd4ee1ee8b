"""`edgeport bench-serve`: load-test `edgeport serve` against a hand-written PyTorch server.

One run, on one machine, side by side:

1. ``edgeport serve`` on a validated model folder, driven by ``edgeport.bench_serve_load`` in
   a process of its own on loopback (on a core of its own: ``core_split``): closed-loop
   throughput and latency at each concurrency; open-loop phases at 90%, then 75%, 60%, 45% of
   the best throughput until one has no error (the rate it sustains);
   one at twice that rate (the queue bound must hold: 503s, a bounded p99, flat memory; run
   unjudged first until the memory settles, see serving-overload-warmup.md under docs/decisions); one
   at half the best throughput with 10% malformed requests and 64 clients holding stalled
   uploads open all phase long (every good request answered, every bad one a 4xx, every stalled
   upload answered 408 or 503 by the server's body limits, no worker lost).
2. The served variant's runner alone (``edgeport.bench_serve_runner``), in a process of its own
   on the server's cores with the server's threads, on the same images decoded and preprocessed
   as the server does: images/s at batch 1 and at ``--max-batch``, and what a request costs
   without HTTP (decode + preprocess, runner). Again just before each closed-loop concurrency,
   at the largest batch its clients can make (one image each, up to ``--max-batch``), with the
   servers idle: each closed-loop throughput is a share of that figure, measured seconds before
   it (issue #35).
3. The server a user would write by hand (``edgeport.bench_serve_baseline``: FastAPI + a
   transformers pipeline, one request at a time) on the same model's PyTorch weights, same
   images, same threads, same concurrencies. Both servers are up together on the same cores and
   their closed-loop phases alternate (edgeport at 1 client, the hand-written server at 1 client,
   edgeport at 4, ...), so that each ratio compares phases seconds apart: the machine's speed
   drifts by 10-25% over minutes (docs/benchmarks.md, 2026-12-06), more than a ratio can absorb.
   With ``--rounds N`` the runner alone and both servers' closed loops run N times over; each
   ratio and share is then judged on its median round (``judged_round``), every round reported.

Writes OUT/bench-serve.json and OUT/bench-serve.md with every figure against the targets of
issues #19 and #35. Every load phase is bounded in time and in requests in flight.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import __version__
from edgeport.runtimes.machine import affinity

REPO = Path(__file__).resolve().parent.parent
# the sustained-rate phase runs at the first of these shares of the best closed-loop throughput with no error
SUSTAINED_SHARES = (0.9, 0.75, 0.6, 0.45)
OVERLOAD_FACTOR = 2.0
MALFORMED_FRACTION = 0.1
# the malformed-request phase runs at this share of the best throughput: it tests what bad input does
# to a server with headroom; near capacity, good requests get 503s from the load alone
MALFORMED_SHARE = 0.5
STALLED_UPLOADS = 64  # clients holding a stalled upload open during the malformed phase (issue #30's lock-out)
THROUGHPUT_RATIO_TARGET = 5.0  # the hand-written server's throughput, times this, at 2 clients or more
# at 1 client there is nothing to batch: what is left is the runtime and the HTTP path (issue #35)
THROUGHPUT_RATIO_TARGET_1_CLIENT = 3.5
# the server's closed-loop throughput over the runner alone's (issue #35): what serving costs
RUNNER_SHARE_TARGET = 0.6
RUNNER_PHASE_S = 3.0  # each runner-alone measurement lasts this long (at most --duration-s)
RUNNER_REPETITIONS = 5  # timed runs per runner-alone measurement; the median is reported
MEMORY_GROWTH_LIMIT = 0.05  # RSS of the overload phase's last quarter over its first (after its warm-up), at most +5%
OVERLOAD_WARMUPS = 4  # unjudged overload phases at most before the judged one (until one grows <= half the limit)
P99_GROWTH_LIMIT = 1.5  # overload: the last third's p99 over the middle third's, at most
MAX_OVERLOAD_S = 180.0
# what --arch exports before serving (the server then takes the fastest that passed): the int8 files of
# the two runtimes with the fastest int8 ViT-B/16 in `edgeport bench` (2026-12-04, 2 cores with AMX:
# openvino-int8 25.0 ms, onnx-int8-dynamic 34.2 ms at batch 1), and their fp32 sources
SERVE_VARIANTS = ["onnx-fp32", "onnx-int8-dynamic", "openvino-fp32", "openvino-int8"]


def log(msg: str) -> None:
    print(msg, flush=True)


def core_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load-generator cores): the last core for the clients, the rest for the server.

    On a machine this small the clients are the server's neighbours, not a separate machine: left
    to share both cores, at twice the sustainable rate the generator's own CPU (about 1 ms a
    request) took the server's, and the accepted throughput fell to 94-113 req/s from 290-325 on
    gender-vit. Pinned apart, each side has what it has for the whole run, as if on two machines,
    and the hand-written server gets the same cores as ours. None, None: no pinning (one core, or
    --no-pin).
    """
    cores = affinity() or []
    if not pin or len(cores) < 2:
        return None, None
    return set(cores[:-1]), {cores[-1]}


def _child_env() -> dict[str, str]:
    """The environment of the processes this command starts (servers, runner alone)."""
    return {**os.environ, "USE_TF": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _pinned(cores: set[int] | None):
    """A preexec_fn that pins the child to ``cores`` (None: leave it)."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


@dataclass
class BenchServeOptions:
    """What `edgeport bench-serve` was asked (see its --help)."""

    out_dir: Path
    model_dir: Path | None = None  # a validated export folder; None with arch
    arch: str | None = None  # "vit-b16" / "tiny": build, export, validate one first
    variant: str | None = None
    images_dir: Path | None = None
    eval_dir: Path | None = None  # for --arch: the labelled images its probe head and validation use
    calibration_dir: Path | None = None  # for --arch: images that calibrate its static int8 files
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16])
    duration_s: float = 15.0
    threads: int = 2
    workers: int = 1
    max_batch: int = 8
    max_wait_ms: float = 0.0
    max_queue: int | None = None  # None: the server derives its own (serving.app.default_max_queue)
    baseline: bool = True
    project_dir: Path | None = None
    config_path: Path | None = None
    max_images: int = 64
    rounds: int = 1  # closed-loop rounds; each figure judged is its median round
    pin: bool = True  # servers and load generator on separate cores (core_split)
    random_head: bool = False  # --arch: keep the random classifier instead of fitting a probe head


# -- processes ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(command: list[str], log_path: Path, url: str, ready_timeout_s: float = 600.0,
                   cores: set[int] | None = None) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until ``url``/health answers 200, yield it; SIGTERM it at the end."""
    import requests

    with open(log_path, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_pinned(cores),
                                env=_child_env())
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if proc.poll() is not None:
                    out.flush()
                    raise RuntimeError(f"server exited with status {proc.returncode} before it was ready; "
                                       f"its output ({log_path}) ends with:\n{log_path.read_text()[-2000:]}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready within {ready_timeout_s:.0f} s; its output: {log_path}")
                time.sleep(0.3)
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class MemoryWatch:
    """RSS of a process and its children, sampled every ``interval_s`` in a thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        s = self.samples
        if not s:
            return {"peak_mb": None, "first_quarter_mb": None, "last_quarter_mb": None}
        q = max(1, len(s) // 4)
        return {"peak_mb": round(max(s), 1), "first_quarter_mb": round(float(np.median(s[:q])), 1),
                "last_quarter_mb": round(float(np.median(s[-q:])), 1)}


def worker_pids(pid: int) -> list[int]:
    """The server's process and its children: a worker that died and was replaced changes this."""
    import psutil

    proc = psutil.Process(pid)
    return sorted([pid, *(c.pid for c in proc.children(recursive=True))])


def run_phase(url: str, images: list[Path], pid: int, work: Path, cores: set[int] | None = None,
              **spec: Any) -> dict[str, Any]:
    """One load phase from a separate process (``edgeport.bench_serve_load``), with the server's memory."""
    from edgeport.bench_serve_load import LoadSpec

    load = LoadSpec(url=url, images=[str(p) for p in images], **spec)
    started = time.time()
    with MemoryWatch(pid) as memory:
        result = _run_child("edgeport.bench_serve_load", load, work, "load", "load generator",
                            timeout=load.duration_s + load.timeout_s + 120, cores=cores)
    result["server_memory"] = memory.summary()
    result["spec"].pop("url", None)
    result["started_at"] = round(started, 3)  # seconds since the epoch: the phases' order in time
    return result


def _run_child(module: str, spec: Any, work: Path, stem: str, what: str, *, timeout: float,
               cores: set[int] | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m MODULE SPEC.json OUT.json`` (``spec``, a dataclass, written to WORK/STEM-spec.json),
    pinned to ``cores``; its result, or a RuntimeError naming ``what`` with the end of its stderr."""
    spec_path, out_path = work / f"{stem}-spec.json", work / f"{stem}-result.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    done = subprocess.run([sys.executable, "-m", module, str(spec_path), str(out_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=_pinned(cores), env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr[-2000:]}")
    return json.loads(out_path.read_text())


def run_runner_alone(model_dir: Path, variant: str | None, images: list[Path], threads: int, max_batch: int,
                     seconds: float, work: Path, cores: set[int] | None = None,
                     only_batch: int | None = None) -> dict[str, Any]:
    """The served variant's runner timed without a server (``edgeport.bench_serve_runner``), in a
    process of its own on ``cores``: the server's, so that both figures come from the same CPUs.
    With ``only_batch``, that batch alone (result ``batch``), as before each closed-loop phase."""
    from edgeport.bench_serve_runner import RunnerSpec

    spec = RunnerSpec(model_dir=str(model_dir), images=[str(p) for p in images], variant=variant, threads=threads,
                      max_batch=max_batch, seconds=seconds, repetitions=RUNNER_REPETITIONS, only_batch=only_batch)
    # three measurements, plus loading the artifact and the warm-up (an OpenVINO compile takes seconds)
    result = _run_child("edgeport.bench_serve_runner", spec, work, "runner", "runner alone",
                        timeout=3 * seconds + 600, cores=cores, env=_child_env())
    result["spec"].pop("model_dir", None)
    return result


def _runner_line(r: dict[str, Any]) -> str:
    one, most, request = r["batch_1"], r["max_batch"], r["request"]
    return (f"  runner alone ({r['variant']}, {_threads(r['threads'])}, cores {r['cores'] or 'all'}): "
            f"batch 1 {one['images_per_s']:.1f} images/s ({one['ms_per_image']:.2f} ms), batch {most['batch']} "
            f"{most['images_per_s']:.1f} images/s ({most['ms_per_image']:.2f} ms an image); a request without HTTP: "
            f"decode + preprocess {request['decode_preprocess_ms']:.2f} ms + runner {request['runner_ms']:.2f} ms "
            f"= {request['ms_per_image']:.2f} ms ({request['images_per_s']:.1f} images/s)")


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def _phase_line(name: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    other = {k: v for k, v in r["statuses"].items() if k != "200"}
    return (f"  {name}: {r['throughput_rps']:.1f} req/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
            f"{r['ok']} ok of {r['good']}" + (f", other statuses {other}" if other else "")
            + (f", {sum(sum(v.values()) for v in r['malformed'].values())} malformed" if r["malformed"] else ""))


# -- what is served ----------------------------------------------------------------------------

def prepare_arch(opts: BenchServeOptions) -> Path:
    """For --arch: a random ViT with a probe head fitted on the labelled images, exported
    (``SERVE_VARIANTS``) and validated, so that `edgeport serve` accepts it."""
    from edgeport.bench import ARCHS
    from edgeport.config import load_config
    from edgeport.model_source import resolve_source
    from edgeport.pipeline import calibration_arrays, calibration_labels, export_model, list_images, validate_export
    from edgeport.random_model import fit_probe_head, make_random_vit
    from edgeport.validation.preprocess import Preprocessing

    if opts.eval_dir is None:
        raise ValueError("--arch needs labelled images (--eval DIR, class folders named female/male)")
    cfg = load_config(opts.config_path)
    work = opts.out_dir / "model"
    model_dir = make_random_vit(work / "source", **ARCHS[opts.arch])
    paths = list_images(opts.eval_dir)
    labels = calibration_labels(paths, opts.eval_dir, ["female", "male"])
    known = labels >= 0
    if not known.any():
        raise ValueError(f"{opts.eval_dir}: no images in class folders named female/male")
    pre = Preprocessing.from_file(model_dir / "preprocessor_config.json")
    if opts.random_head:
        # near-constant logits: every variant agrees with PyTorch, so the int8 files pass validation
        # whatever their rounding; a figure for throughput only (as `edgeport bench` uses it)
        log(f"bench-serve: a random {opts.arch}, random head (validation passes trivially: throughput only)")
    else:
        log(f"bench-serve: a random {opts.arch} with a probe head fitted on {int(known.sum())} images of "
            f"{opts.eval_dir}")
        fit_probe_head(model_dir, calibration_arrays([p for p, k in zip(paths, known) if k], pre), labels[known])
    export_dir = work / "export"
    variants = SERVE_VARIANTS + ([opts.variant] if opts.variant and opts.variant not in SERVE_VARIANTS else [])
    if opts.calibration_dir is None:  # the calibrated int8 files need real images; leave them out
        from edgeport.variants import VARIANTS

        variants = [v for v in variants if not VARIANTS[v].calibrated]
    log(f"bench-serve: exporting {', '.join(variants)} and validating on {opts.eval_dir}")
    export_model(f"bench-{opts.arch}", resolve_source(str(model_dir)), export_dir, variants=variants,
                 images_dir=opts.eval_dir, calibration_dir=opts.calibration_dir, project_dir=opts.project_dir,
                 progress=False, precision_search=False)
    validate_export(export_dir, opts.eval_dir, cfg.budgets_for(None), cfg.run, progress=False)
    return export_dir


def model_source_of(model_dir: Path) -> str:
    """The PyTorch model folder ``model_dir`` was exported from (for the hand-written server)."""
    from edgeport.pipeline import manifest_project_dir, read_manifest, reference_location

    manifest = read_manifest(model_dir)
    src = manifest["source"]
    if not src.get("path"):
        raise ValueError(f"{model_dir}: exported from the hub id {src.get('id')!r}; the hand-written server "
                         "needs a local model folder (run with --no-baseline)")
    return reference_location(manifest_project_dir(model_dir, manifest), src["path"])


def request_images(model_dir: Path, images_dir: Path | None, count: int) -> list[Path]:
    """Up to ``count`` images to send: ``images_dir``, else the evaluation folder in report.json,
    spread over its folders (class folders are sorted by class)."""
    from edgeport.pipeline import list_images, manifest_project_dir, read_manifest
    from edgeport.portable import absolute_from

    if images_dir is None:
        report = json.loads((model_dir / "report.json").read_text())
        images_dir = absolute_from(manifest_project_dir(model_dir, read_manifest(model_dir)),
                                   report["eval_set"]["path"])
    paths = list_images(images_dir)
    if not paths:
        raise FileNotFoundError(f"no images in {images_dir}: pass --images DIR")
    pick = np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int)
    return [paths[i] for i in sorted(set(pick))]


# -- the run -----------------------------------------------------------------------------------

def run_bench_serve(opts: BenchServeOptions) -> dict[str, Any]:
    """Run every phase; write bench-serve.json and bench-serve.md into ``opts.out_dir``."""
    from edgeport.bench import machine_info

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = prepare_arch(opts) if opts.arch else opts.model_dir
    assert model_dir is not None
    images = request_images(model_dir, opts.images_dir, opts.max_images)
    source = model_source_of(model_dir) if opts.baseline else None
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "edgeport_version": __version__,
        "machine": machine_info(), "model_dir": model_dir.name, "arch": opts.arch, "images": len(images),
        "weights": None if not opts.arch else ("random backbone and head: validation passes trivially, throughput only"
                                               if opts.random_head else "random backbone, probe head fitted on "
                                               "the evaluation images: throughput only"),
        "settings": {k: v for k, v in asdict(opts).items()
                     if k in ("concurrency", "duration_s", "threads", "workers", "max_batch", "max_wait_ms",
                              "max_queue", "rounds")},
    }
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-serve-") as tmp:  # the load generator's spec and result
        _run_servers(opts, model_dir, images, source, result, Path(tmp))
    rounds = result["closed_loop_rounds"]
    shares = result["runner_alone"]["server_share"] = runner_shares(rounds["edgeport"], rounds["runner alone"])
    log("bench-serve: edgeport serve's closed loop as a share of the runner alone: "
        + ", ".join(f"{c} client{'s' if c != '1' else ''} {s['share']:.0%} (against batch {s['batch']})"
                    for c, s in shares.items()))
    result["targets"] = judge_targets(result, opts)
    write(result, opts.out_dir)
    return result


def _run_servers(opts: BenchServeOptions, model_dir: Path, images: list[Path], source: str | None,
                 result: dict[str, Any], work: Path) -> None:
    """The runner alone; then both servers up, their closed-loop phases alternating; then
    edgeport's open-loop phases."""
    import requests

    server_cores, load_cores = core_split(opts.pin)
    threads = min(opts.threads, len(server_cores)) if server_cores else opts.threads  # no oversubscribed core
    result["settings"].update(threads=threads, server_cores=sorted(server_cores) if server_cores else "all",
                              load_generator_cores=sorted(load_cores) if load_cores else "all")

    def phase(url: str, pid: int, **spec: Any) -> dict[str, Any]:
        return run_phase(url, images, pid, work, cores=load_cores, **spec)

    def closed_loops(servers: dict[str, tuple[str, int]]
                     ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]] | None]:
        """A short warm-up of each server, then ``--rounds`` times: at each concurrency the runner
        alone at the batch it is compared with (the servers idle) and the closed loop on each
        server in turn. Every round is kept (``closed_loop_rounds``); each ratio and share is judged
        on its median round (``server_ratios``, ``runner_shares``). Returns each server's phases
        shown side by side, and the ratios (None without the hand-written server)."""
        for url, pid in servers.values():
            phase(url, pid, mode="closed", concurrency=2, duration_s=3)
        rounds: dict[str, dict[str, list[dict[str, Any]]]] = {name: {str(c): [] for c in opts.concurrency}
                                                              for name in ("runner alone", *servers)}
        for r in range(opts.rounds):
            for c in opts.concurrency:
                batch, started = compared_batch(c, opts.max_batch), time.time()
                alone = run_runner_alone(model_dir, opts.variant, images, threads, opts.max_batch, runner_s, work,
                                         cores=server_cores, only_batch=batch)["batch"]
                alone["started_at"] = round(started, 3)
                rounds["runner alone"][str(c)].append(alone)
                where = f"concurrency {c}" + (f", round {r + 1} of {opts.rounds}" if opts.rounds > 1 else "")
                log(f"  runner alone, {where}: batch {batch} {alone['images_per_s']:.1f} images/s")
                for name, (url, pid) in servers.items():
                    rounds[name][str(c)].append(phase(url, pid, mode="closed", concurrency=c,
                                                      duration_s=opts.duration_s))
                    log(_phase_line(f"{name}, {where}", rounds[name][str(c)][-1]))
        result["closed_loop_rounds"] = rounds
        result["runner_alone"]["beside"] = {c: median_round(figures, "images_per_s")
                                            for c, figures in rounds["runner alone"].items()}
        # shown side by side and run open-loop from: per concurrency the round whose ratio is the
        # median (both servers' phases of one round), or edgeport's median round without the other
        ratios = server_ratios(rounds["edgeport"], rounds["hand-written"]) if "hand-written" in rounds else None
        chosen = ({c: r["round"] for c, r in ratios.items()} if ratios else
                  {c: median_index([p["throughput_rps"] for p in phases]) for c, phases in rounds["edgeport"].items()})
        return {name: {c: phases[chosen[c]] for c, phases in by_c.items()}
                for name, by_c in rounds.items() if name != "runner alone"}, ratios

    # before the server starts: the runner has the server's cores to itself, and a runner that
    # cannot run stops the benchmark before its long phases rather than after
    runner_s = min(RUNNER_PHASE_S, opts.duration_s)
    log(f"bench-serve: the served variant's runner alone, on the server's cores ({runner_s:g} s per measurement)")
    result["runner_alone"] = run_runner_alone(model_dir, opts.variant, images, threads, opts.max_batch, runner_s,
                                              work, cores=server_cores)
    log(_runner_line(result["runner_alone"]))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "edgeport", "serve", str(model_dir), "--port", str(port),
               "--threads", str(threads), "--workers", str(opts.workers), "--max-batch", str(opts.max_batch),
               "--max-wait-ms", str(opts.max_wait_ms)] + (["--max-queue", str(opts.max_queue)] if opts.max_queue else [])
    if opts.variant:
        command += ["--variant", opts.variant]
    log(f"bench-serve: edgeport serve {model_dir} ({len(images)} images, {opts.duration_s:g} s per phase)")
    with server_process(command, opts.out_dir / "serve.log", url, cores=server_cores) as proc:
        meta = requests.get(f"{url}/metadata", timeout=10).json()
        result["served"] = {"variant": meta["variant"], "runtime": meta["runtime"], "model": meta["model"],
                            "decode": (meta.get("preprocessing") or {}).get("decode", "exact")}
        max_queue = int(meta["limits"]["max_queue"])  # what the server chose, when not told
        result["settings"]["max_queue"] = max_queue
        log(f"  serving {meta['variant']} ({meta['runtime']}; images decoded {result['served']['decode']})")
        if meta["variant"] != result["runner_alone"]["variant"]:  # the same selection on the same files: a bug
            raise RuntimeError(f"the server serves {meta['variant']}, the runner alone timed "
                               f"{result['runner_alone']['variant']}: their figures would not compare")
        servers = {"edgeport": (url, proc.pid)}
        with contextlib.ExitStack() as handwritten:  # up for the closed loops only
            if source is not None:
                base_port = free_port()
                base_url = f"http://127.0.0.1:{base_port}"
                log(f"bench-serve: the hand-written server (FastAPI + transformers pipeline, PyTorch) on {source}")
                base_command = [sys.executable, "-m", "edgeport.bench_serve_baseline", source, "--port",
                                str(base_port), "--threads", str(threads)]
                base = handwritten.enter_context(server_process(base_command, opts.out_dir / "baseline.log",
                                                                base_url, cores=server_cores))
                servers["hand-written"] = (base_url, base.pid)
            sweeps, ratios = closed_loops(servers)
        if ratios is not None:
            result["handwritten"] = {"sweep": sweeps["hand-written"], "ratio": ratios,
                                     "what": "FastAPI + transformers pipeline ('image-classification') in PyTorch "
                                             "eager, one request at a time"}
        sweep = sweeps["edgeport"]
        capacity = max(r["throughput_rps"] for r in sweep.values())
        pids = worker_pids(proc.pid)
        # the highest rate it sustains: the first share of the best throughput with no error (a bounded search)
        tried = []
        for share in SUSTAINED_SHARES:
            rate = round(share * capacity, 2)
            sustained = phase(url, proc.pid, mode="open", rate=rate, duration_s=opts.duration_s)
            log(_phase_line(f"open load at {rate} req/s ({share:.0%} of the best)", sustained))
            tried.append({"share": share, "rate": rate, "errors": sustained["good"] - sustained["ok"],
                          "client_saturated": sustained["client_saturated"]})
            if sustained["good"] == sustained["ok"] and not sustained["client_saturated"]:
                break
        sustained["tried"] = tried
        # long enough for the queue to fill in the first third (a slow model takes max_queue / capacity
        # seconds to fill it), so that the last third shows the bounded steady state
        fill_s = max_queue / max(capacity, 1e-9)
        overload_spec = dict(mode="open", rate=round(OVERLOAD_FACTOR * rate, 2),
                             duration_s=min(max(opts.duration_s, 3 * fill_s), MAX_OVERLOAD_S),
                             max_in_flight=max(256, 4 * max_queue))
        # The same overload first, not judged, until the server's memory settles (a phase that grows
        # by at most half the limit; at most OVERLOAD_WARMUPS phases): a server's memory climbs to a
        # ceiling over its first seconds of overload (gender-vit: 91 -> 114 MB over 18 s in one run,
        # to 117 MB after 12 s in another; heap fragmentation under as many requests in flight as the
        # bounds let in), and a phase judged on that climb judged the allocator, not a leak. A leak
        # keeps growing: the judged phase still sees it.
        warmups = []
        for _ in range(OVERLOAD_WARMUPS):
            warmup = phase(url, proc.pid, **overload_spec)
            log(_phase_line(f"open load at {OVERLOAD_FACTOR:g}x ({OVERLOAD_FACTOR * rate:.1f} req/s), warm-up "
                            f"{len(warmups) + 1}", warmup) + f"; RSS {_quarters(warmup['server_memory'])}")
            warmups.append({k: warmup[k] for k in ("started_at", "seconds", "good", "ok", "statuses", "server_memory")})
            growth = _growth(warmup["server_memory"])
            if growth is not None and growth <= MEMORY_GROWTH_LIMIT / 2:
                break
        overload = phase(url, proc.pid, **overload_spec)
        overload["warmups"] = warmups
        log(_phase_line(f"open load at {OVERLOAD_FACTOR:g}x ({OVERLOAD_FACTOR * rate:.1f} req/s)", overload))
        half = round(MALFORMED_SHARE * capacity, 2)
        malformed = phase(url, proc.pid, mode="open", rate=half, duration_s=opts.duration_s,
                          malformed_fraction=MALFORMED_FRACTION, stalled_uploads=STALLED_UPLOADS, seed=1)
        malformed["body_grace_s"] = float(meta["limits"]["body_grace_s"])
        log(_phase_line(f"open load at {half} req/s, {MALFORMED_FRACTION:.0%} malformed, "
                        f"{STALLED_UPLOADS} stalled uploads", malformed)
            + f"; stalled uploads answered {malformed['stalled']}, held {malformed['stalled_hold_s']} s")
        alive = proc.poll() is None and requests.get(f"{url}/health", timeout=10).status_code == 200
        malformed["server_alive_after"] = alive
        malformed["workers_unchanged"] = alive and worker_pids(proc.pid) == pids
    result["edgeport"] = {"sweep": sweep, "capacity_rps": capacity, "sustained": sustained, "overload": overload,
                          "malformed": malformed}


def _quarters(mem: dict[str, Any]) -> str:
    """A phase's RSS as 'first quarter -> last quarter MB'."""
    return f"{mem.get('first_quarter_mb')} -> {mem.get('last_quarter_mb')} MB"


def _growth(mem: dict[str, Any]) -> float | None:
    """A phase's RSS growth, last quarter over first (None without samples)."""
    first, last = mem.get("first_quarter_mb"), mem.get("last_quarter_mb")
    return last / first - 1 if first and last else None


def _warmup_memory(overload: dict[str, Any]) -> str:
    """The unjudged warm-up phases' RSS (a result of an older run has none)."""
    warmups = overload.get("warmups") or []
    return ", ".join(_quarters(w["server_memory"]) for w in warmups) if warmups else "none"


def median_index(values: list[float]) -> int:
    """The index of the median of ``values`` (the lower of the two middle ones for an even count: a
    figure one round measured, never an average no round saw)."""
    return sorted(range(len(values)), key=values.__getitem__)[(len(values) - 1) // 2]


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round (a dict of figures) whose ``key`` is the median of ``rounds`` (``median_index``)."""
    return rounds[median_index([r[key] for r in rounds])]


def compared_batch(concurrency: int, max_batch: int) -> int:
    """The runner-alone batch a closed loop of ``concurrency`` clients is compared with: the
    largest batch the batcher can make of them, one image per client up to --max-batch (1 client:
    batch 1; 16 clients and --max-batch 8: batch 8)."""
    return max(1, min(concurrency, max_batch))


def runner_shares(served: dict[str, list[dict[str, Any]]],
                  alone: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each concurrency's closed-loop throughput as a share of the runner alone's images/s measured
    just before that phase, in each round (``served``: closed-loop phases by concurrency, a list of
    rounds; ``alone``: the runner alone's figures, each with its ``batch``, the same way); the
    median round's (a request holds one image, so req/s and images/s count the same thing)."""
    shares = {}
    for c, phases in served.items():
        rows = [{"batch": a["batch"], "server_rps": p["throughput_rps"], "runner_images_per_s": a["images_per_s"],
                 "share": p["throughput_rps"] / a["images_per_s"] if a["images_per_s"] else None}
                for p, a in zip(phases, alone[c])]
        shares[c] = judged_round(rows, "share")
    return shares


def server_ratios(ours: dict[str, list[dict[str, Any]]],
                  theirs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each concurrency's closed-loop throughput over the hand-written server's in the same round
    (phases seconds apart), the median round's; both as lists of rounds by concurrency."""
    ratios = {}
    for c, phases in ours.items():
        rows = [{"server_rps": p["throughput_rps"], "handwritten_rps": h["throughput_rps"],
                 "ratio": p["throughput_rps"] / h["throughput_rps"] if h["throughput_rps"] else None}
                for p, h in zip(phases, theirs[c])]
        ratios[c] = judged_round(rows, "ratio")
    return ratios


def judged_round(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The row of the round judged on ``key``: the median round (the first when a round has no
    figure), with its index as ``round`` and, for several rounds, every round's figure under
    ``KEY_by_round`` (unrounded: judged exactly)."""
    values = [r[key] for r in rows]
    k = median_index(values) if None not in values else 0
    judged = dict(rows[k], round=k)
    if len(rows) > 1:
        judged[f"{key}_by_round"] = values
    return judged


def share_targets(shares: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue #35's targets: with more than one client, at least RUNNER_SHARE_TARGET of the runner
    alone. One client is not held to it (the issue sets it at 4 and 16 clients): between its
    requests the server waits for the client's next one, and the share is reported all the same."""
    return [{"target": f"throughput >= {RUNNER_SHARE_TARGET:.0%} of the runner alone, concurrency {c} "
                       f"(against batch {s['batch']})",
             "value": f"{s['server_rps']:.1f} req/s vs {s['runner_images_per_s']:.1f} images/s = "
                      + (f"{s['share']:.1%}" if s["share"] is not None else "-")
                      + (f" (the median of {len(s['share_by_round'])} rounds: "
                         f"{', '.join(f'{x:.1%}' for x in s['share_by_round'])})" if "share_by_round" in s else ""),
             "met": (s["share"] >= RUNNER_SHARE_TARGET) if s["share"] is not None else None}
            for c, s in shares.items() if int(c) > 1]


def ratio_target(concurrency: int) -> float:
    """How many times the hand-written server's throughput ours must reach at ``concurrency``."""
    return THROUGHPUT_RATIO_TARGET_1_CLIENT if concurrency == 1 else THROUGHPUT_RATIO_TARGET


def judge_targets(result: dict[str, Any], opts: BenchServeOptions) -> list[dict[str, Any]]:
    """Issues #19's and #35's load targets, each with its measured value and whether it was met."""
    ours = result["edgeport"]
    rows = []
    ratios = (result.get("handwritten") or {}).get("ratio")
    for c in opts.concurrency:
        r = ratios[str(c)] if ratios else None
        value = (f"{ours['sweep'][str(c)]['throughput_rps']:.1f} req/s; hand-written server not run" if r is None else
                 f"{r['server_rps']:.1f} vs {r['handwritten_rps']:.1f} req/s = {r['ratio']:.2f}x"
                 + (f" (the median of {len(r['ratio_by_round'])} rounds: "
                    f"{', '.join(f'{x:.2f}x' for x in r['ratio_by_round'])})" if "ratio_by_round" in r else ""))
        rows.append({"target": f"throughput >= {ratio_target(c):g}x the hand-written server, concurrency {c}",
                     "value": value,
                     "met": (r["ratio"] >= ratio_target(c)) if r and r["ratio"] is not None else None})
    if result.get("runner_alone", {}).get("server_share"):
        rows += share_targets(result["runner_alone"]["server_share"])
    s = ours["sustained"]
    errors = s["good"] - s["ok"]
    share = s["tried"][-1]["share"]
    rows.append({"target": "0 errors at the highest rate it sustains (the first of "
                           f"{', '.join(f'{x:.0%}' for x in SUSTAINED_SHARES)} of the best throughput without one: "
                           f"{share:.0%})",
                 "value": f"{errors} errors of {s['good']} at {s['spec']['rate']} req/s (p99 {s['latency_ms']['p99']} ms)"
                          + (f"; the generator could not start {s['client_saturated']}" if s["client_saturated"] else ""),
                 "met": errors == 0 and s["client_saturated"] == 0})
    o = ours["overload"]
    rejected = o["statuses"].get("503", 0)
    unexpected = {k: v for k, v in o["statuses"].items() if k not in ("200", "503")}
    thirds = o["p99_ms_by_third"]
    middle, last = thirds["second"], thirds["third"]
    mem = o["server_memory"]
    growth = _growth(mem)
    # "Bounded" is judged as "does not grow": with an unbounded queue the accepted requests' latency
    # grows with the time spent over capacity, so the last third's p99 would run away from the middle
    # third's (the first third is the queue filling). An absolute bound from the queue size alone does
    # not hold here: requests also wait in the socket backlog before the server sees them.
    bounded = middle is not None and last is not None and last <= P99_GROWTH_LIMIT * middle + 50
    rows.append({"target": f"at {OVERLOAD_FACTOR:g}x that rate: rejections are 503, accepted p99 bounded "
                           f"(last third of the phase <= {P99_GROWTH_LIMIT:g}x the middle third + 50 ms), memory flat "
                           f"(+{MEMORY_GROWTH_LIMIT:.0%} at most, after the same overload unjudged until it grows "
                           f"{MEMORY_GROWTH_LIMIT / 2:.1%} at most, {OVERLOAD_WARMUPS} times at most)",
                 "value": f"{rejected} of {o['good']} rejected with 503, {o['ok']} answered, other statuses "
                          f"{unexpected or 'none'}; p99 {o['latency_ms']['p99']} ms (by third {thirds['first']} / {middle} / "
                          f"{last} ms over {o['spec']['duration_s']:.0f} s); "
                          f"RSS {_quarters(mem)} (peak {mem['peak_mb']}; "
                          f"warm-up phases {_warmup_memory(o)})",
                 "met": bool(not unexpected and rejected > 0 and bounded and growth is not None
                             and growth <= MEMORY_GROWTH_LIMIT)})
    m = ours["malformed"]
    # a malformed request refused as busy (503, before its body is read) was not processed: no harm
    bad_answers = {kind: {k: v for k, v in statuses.items() if not (k.startswith("4") or k == "503")}
                   for kind, statuses in m["malformed"].items()}
    bad_answers = {k: v for k, v in bad_answers.items() if v}
    malformed_count = sum(sum(v.values()) for v in m["malformed"].values())
    stalled = m.get("stalled") or {}
    stalled_count = sum(stalled.values())
    # each stalled client's last upload may be cut by the phase's end (status 0); any other must have
    # been answered by the server's body limits: 408 (rate floor, deadline) or 503 (upload bound)
    unanswered = stalled.get("0", 0)
    stalled_bad = {k: v for k, v in stalled.items() if k not in ("0", "408", "503")}
    stalled_ok = (not stalled_bad and unanswered <= (m["spec"].get("stalled_uploads") or 0)
                  and (stalled_count > unanswered or not stalled_count))
    rows.append({"target": f"{MALFORMED_FRACTION:.0%} malformed requests and {STALLED_UPLOADS} stalled uploads (at "
                           f"{MALFORMED_SHARE:.0%} of the best throughput): 0 crashed workers, every good request "
                           "answered, every bad one a 4xx, every stalled upload answered 408 or 503",
                 "value": f"{m['ok']} of {m['good']} good requests answered 200; {malformed_count} malformed, "
                          + (f"not 4xx: {bad_answers}" if bad_answers else "all 4xx (or 503 when busy)")
                          + f"; {stalled_count} stalled uploads answered {stalled or '-'} (0: cut by the phase's "
                            f"end), held {(m.get('stalled_hold_s') or {}).get('median')} s median"
                          + f"; server alive: {m['server_alive_after']}, same workers: {m['workers_unchanged']}",
                 "met": m["ok"] == m["good"] and not bad_answers and m["workers_unchanged"] and stalled_ok})
    return rows


def write(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    json_path, md_path = out / "bench-serve.json", out / "bench-serve.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(render_markdown(result))
    log(f"bench-serve: wrote {json_path} and {md_path}")
    return json_path, md_path


def render_markdown(r: dict[str, Any]) -> str:
    ours, base = r["edgeport"], (r.get("handwritten") or {}).get("sweep", {})
    m = r["machine"]
    lines = [f"# edgeport bench-serve: {r['served']['model']} ({r['served']['variant']}, {r['served']['runtime']}, "
             f"decode {r['served'].get('decode', 'exact')})", "",
             f"{r['date']}, edgeport {r['edgeport_version']}, {m.get('cpu')} ({m.get('cores')} cores). "
             + (f"Model: {r['arch']}, {r['weights']}. " if r.get("weights") else "")
             + f"{r['images']} images sent in turn; settings {r['settings']}. The load generator runs in its own "
             "process on the same machine (loopback), "
             + ("on a core of its own, the servers on the others (`server_cores`)." if r["settings"].get("server_cores")
                not in (None, "all") else "sharing the cores with the server."), "",
             "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['value']} | {_met(t['met'])} |" for t in r["targets"]]
    rounds, ratios = r.get("closed_loop_rounds", {}), (r.get("handwritten") or {}).get("ratio", {})
    several = any(len(phases) > 1 for phases in rounds.get("edgeport", {}).values())
    lines += ["", "## Closed loop, side by side", "",
              ("Both servers up on the same cores; at each concurrency the runner alone, edgeport's phase, then the "
               "hand-written server's." if base else "edgeport alone (the hand-written server was not run); at each "
               "concurrency the runner alone, then edgeport's phase.")
              + (f" {r['settings']['rounds']} rounds of all that; shown, at each concurrency, the round whose "
                 + ("ratio" if base else "throughput") + " is the median (every round below)." if several else ""), "",
              "| concurrency | edgeport req/s | p50 ms | p90 ms | p99 ms | errors | hand-written req/s | p50 ms | p99 ms | ratio |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c, row in ours["sweep"].items():
        b = base.get(c)
        ratio = f"{ratios[c]['ratio']:.2f}x" if ratios.get(c, {}).get("ratio") is not None else "-"
        lines.append(f"| {c} | {row['throughput_rps']:.1f} | {row['latency_ms']['p50']} | {row['latency_ms']['p90']} | "
                     f"{row['latency_ms']['p99']} | {row['good'] - row['ok']} | "
                     + (f"{b['throughput_rps']:.1f} | {b['latency_ms']['p50']} | {b['latency_ms']['p99']} | "
                        if b else "- | - | - | ") + f"{ratio} |")
    if several:
        lines += ["", "Every round (a round runs every concurrency in turn):", "",
                  "| concurrency | round | runner alone images/s | edgeport req/s | hand-written req/s | ratio | share |",
                  "|---|---|---|---|---|---|---|"]
        for c, phases in rounds["edgeport"].items():
            theirs = rounds.get("hand-written", {}).get(c, [None] * len(phases))
            for k, (p, a, h) in enumerate(zip(phases, rounds["runner alone"][c], theirs), 1):
                lines.append(f"| {c} | {k} | {a['images_per_s']:.1f} | {p['throughput_rps']:.1f} | "
                             + (f"{h['throughput_rps']:.1f} | {p['throughput_rps'] / h['throughput_rps']:.2f}x | "
                                if h and h["throughput_rps"] else "- | - | ")
                             + (f"{p['throughput_rps'] / a['images_per_s']:.0%} |" if a["images_per_s"] else "- |"))
    if r.get("runner_alone"):
        lines += _runner_markdown(r["runner_alone"])
    lines += ["", "## Open loop (edgeport)", "",
              "| phase | rate req/s | sent | 200 | 503 | other | p50 ms | p99 ms | RSS first/last quarter, peak MB |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, key in (("sustained", "sustained"), ("overload", "overload"), ("10% malformed", "malformed")):
        row = ours[key]
        other = {k: v for k, v in row["statuses"].items() if k not in ("200", "503")}
        mem = row["server_memory"]
        lines.append(f"| {name} | {row['spec']['rate']} | {row['sent']} | {row['ok']} | {row['statuses'].get('503', 0)} | "
                     f"{other or '-'} | {row['latency_ms']['p50']} | {row['latency_ms']['p99']} | "
                     f"{mem['first_quarter_mb']} / {mem['last_quarter_mb']}, {mem['peak_mb']} |")
    if ours["malformed"]["malformed"]:
        lines += ["", "Malformed requests by kind and status: "
                  + "; ".join(f"{k}: {v}" for k, v in sorted(ours["malformed"]["malformed"].items()))]
    if ours["malformed"].get("stalled"):
        lines += ["", f"Stalled uploads (clients announcing 1 MB and sending 100 bytes, all phase long) by status: "
                  f"{ours['malformed']['stalled']} (0: cut by the phase's end); seconds until the server answered: "
                  f"{ours['malformed']['stalled_hold_s']} (body grace {ours['malformed'].get('body_grace_s')} s)."]
    return "\n".join(lines) + "\n"


def _runner_markdown(ra: dict[str, Any]) -> list[str]:
    """The runner-alone section: its figures, and the server's closed loop as a share of them."""
    one, most, request = ra["batch_1"], ra["max_batch"], ra["request"]
    lines = ["", "## Runner alone (no server)", "",
             f"The served variant's runner ({ra['variant']}, {ra['runtime']}) in a process of its own on the "
             f"server's cores ({ra['cores'] or 'all'}) with {_threads(ra['threads'])}, on the same images decoded and "
             f"preprocessed as the server does; the median of {ra['repetitions']} timed runs over "
             f"{ra['seconds_per_measurement']:g} s per measurement, after a warm-up.", "",
             "| measured | images/s | ms per image |", "|---|---|---|",
             f"| runner, batch 1 | {one['images_per_s']:.1f} | {one['ms_per_image']:.2f} |",
             f"| runner, batch {most['batch']} (the server's max batch) | {most['images_per_s']:.1f} | "
             f"{most['ms_per_image']:.2f} |",
             f"| a request without HTTP: decode + preprocess, then runner at batch 1 | {request['images_per_s']:.1f} | "
             f"{request['ms_per_image']:.2f} (decode + preprocess {request['decode_preprocess_ms']:.2f}, runner "
             f"{request['runner_ms']:.2f}) |"]
    if ra.get("server_share"):
        lines += ["", "edgeport serve's closed-loop throughput as a share of the runner alone, measured again just "
                  "before each concurrency's phases (the servers idle), at the largest batch its clients can make "
                  "(one image each, up to the max batch)"
                  + ("; with several rounds, the round with the median share:" if any(
                      "share_by_round" in x for x in ra["server_share"].values()) else ":"), "",
                  "| concurrency | edgeport req/s | runner alone images/s | at batch | share |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c} | {x['server_rps']:.1f} | {x['runner_images_per_s']:.1f} | {x['batch']} | "
                  + (f"{x['share']:.0%} |" if x["share"] is not None else "- |")
                  for c, x in ra["server_share"].items()]
    return lines


def _met(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")
