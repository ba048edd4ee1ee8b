"""The load generator of `edgeport bench-serve`: HTTP clients in a process of their own.

Run as ``python -m edgeport.bench_serve_load SPEC.json OUT.json``, so the clients' CPU time
and GIL are not the server's. Two shapes of load, both bounded in time and in count:

- **closed**: ``concurrency`` clients, each sending its next request when the last one is
  answered (the throughput a fixed number of callers gets);
- **open**: requests start at a fixed ``rate`` whatever the server does (how a crowd of
  independent callers arrives); at most ``max_in_flight`` are outstanding, and a start that
  finds no free client is counted as ``client_saturated``, not sent, so the generator itself
  never queues without bound.

A ``malformed_fraction`` of the requests are bad on purpose (not an image, a truncated
image, bad JSON, JSON nested 100,000 deep, bad base64, an unknown parameter, a wrong
Content-Type); they are counted apart, and their answers must be 4xx. Beside them,
``stalled_uploads`` raw-socket clients each keep an upload stalled for the whole phase: they
announce a 1 MB body, send 100 bytes and wait; when the server answers (408 once the body falls
under its rate floor, 503 while its upload bound is full) they start another. Their answers
are counted apart too (``stalled``); the good requests must not notice them.

Written here rather than taken from wrk/locust: wrk is not a Python package, locust is not in
the lock, and the figures need per-request kinds (good/malformed) and their statuses.
"""
from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import select
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Bad requests, each with the status class the server must answer it with (4xx).
MALFORMED_KINDS = ("not-an-image", "truncated-image", "bad-json", "deep-json", "bad-base64", "unknown-parameter",
                   "unsupported-content-type")
STALLED_DECLARED, STALLED_SENT = 1_000_000, 100  # bytes a stalled upload announces, and sends


@dataclass
class LoadSpec:
    """One phase of load (see the module docstring)."""

    url: str
    images: list[str]  # image files sent as bodies, in turn
    mode: str = "closed"  # "closed" or "open"
    concurrency: int = 4  # closed: clients; open: ignored
    rate: float = 0.0  # open: requests per second
    duration_s: float = 10.0
    max_in_flight: int = 256  # open: outstanding requests at most
    malformed_fraction: float = 0.0
    stalled_uploads: int = 0  # clients holding a stalled upload open all phase long
    timeout_s: float = 60.0
    seed: int = 0


@dataclass
class Sample:
    start: float
    latency: float
    status: int  # 0: no HTTP answer (connection error, client timeout)
    malformed: str | None = None


@dataclass
class LoadResult:
    """What one phase measured. Latencies are of good requests answered 200."""

    spec: dict[str, Any]
    seconds: float
    sent: int
    good: int
    ok: int  # good requests answered 200
    throughput_rps: float  # ok per second
    latency_ms: dict[str, float | None]
    statuses: dict[str, int]  # good requests by status ("0": no answer)
    malformed: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> status -> count
    client_saturated: int = 0
    p99_ms_by_third: dict[str, float | None] = field(default_factory=dict)  # of the phase, by start time
    stalled: dict[str, int] = field(default_factory=dict)  # stalled uploads' answers by status ("0": none)
    stalled_hold_s: dict[str, float | None] = field(default_factory=dict)  # how long the server let them hang


def _content_type(path: str) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
            "bmp": "image/bmp"}.get(suffix, "application/octet-stream")


class _Requests:
    """Bodies to send: the good ones in turn, and the malformed ones made from them."""

    def __init__(self, spec: LoadSpec) -> None:
        self.bodies = [(Path(p).read_bytes(), _content_type(p)) for p in spec.images]
        if not self.bodies:
            raise ValueError("no images to send")
        self.rng = np.random.default_rng(spec.seed)
        self.fraction = spec.malformed_fraction
        self._lock = threading.Lock()
        self._count = 0

    def next(self) -> tuple[bytes, dict[str, str], str | None]:
        """(body, headers, malformed kind or None)."""
        with self._lock:
            i = self._count
            self._count += 1
            bad = self.fraction > 0 and self.rng.random() < self.fraction
            kind = MALFORMED_KINDS[int(self.rng.integers(len(MALFORMED_KINDS)))] if bad else None
        body, ctype = self.bodies[i % len(self.bodies)]
        if kind is None:
            return body, {"Content-Type": ctype}, None
        if kind == "not-an-image":
            return b"this is not an image " * 20, {"Content-Type": "image/jpeg"}, kind
        if kind == "truncated-image":
            return body[: len(body) // 3], {"Content-Type": ctype}, kind
        if kind == "bad-json":
            return b'{"inputs": "abc', {"Content-Type": "application/json"}, kind
        if kind == "deep-json":
            return (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {"Content-Type": "application/json"},
                    kind)
        if kind == "bad-base64":
            return json.dumps({"inputs": "@@not base64@@"}).encode(), {"Content-Type": "application/json"}, kind
        if kind == "unknown-parameter":
            doc = {"inputs": base64.b64encode(body).decode(), "parameters": {"no_such_parameter": 1}}
            return json.dumps(doc).encode(), {"Content-Type": "application/json"}, kind
        return body, {"Content-Type": "text/plain"}, kind


def closed_by_server(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection has been closed by the server (its keep-alive limit):
    readable while no request is outstanding means end of file. http.client would send the next
    request on it and fail (``status 0``), counting the server's ordinary idle close as a lost
    request; urllib3 makes the same check before reusing a connection (``is_connection_dropped``)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select.select: past 1,024 open descriptors it refuses the socket
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed or invalid descriptor: not reusable either
        return True


def _stalled_uploads(spec: LoadSpec, deadline: float) -> tuple[list[threading.Thread], list[tuple[int, float]]]:
    """Threads that each keep one stalled upload open until ``deadline``; (status, seconds held) per upload."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(spec.url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {STALLED_DECLARED}\r\n\r\n").encode() + b"\xff" * STALLED_SENT
    outcomes: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            status = 0
            try:
                with socket.create_connection(address, timeout=max(0.1, deadline - start)) as sock:
                    sock.sendall(head)
                    answer = sock.recv(64)  # blocks until the server answers or closes, or the phase ends
                    if answer.startswith(b"HTTP/1.1 "):
                        status = int(answer[9:12])
            except TimeoutError:  # the phase ended first: held for the whole phase, no answer
                status = 0
            except OSError:
                status = 0
                time.sleep(0.05)
            with lock:
                outcomes.append((status, time.perf_counter() - start))

    return [threading.Thread(target=client, daemon=True) for _ in range(spec.stalled_uploads)], outcomes


def run_load(spec: LoadSpec) -> LoadResult:
    """Drive ``spec.url`` as the spec says; returns what was measured."""
    from urllib.parse import urlsplit

    parts = urlsplit(spec.url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    source = _Requests(spec)
    samples: list[Sample] = []
    lock = threading.Lock()
    local = threading.local()
    saturated = 0

    def send() -> None:
        # http.client, not requests: requests spent about 0.6 ms of the client's core per request,
        # which at one client is a quarter of edgeport's round trip, not the server's time
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(host, port, timeout=spec.timeout_s)
        elif closed_by_server(connection):
            connection.close()  # reopened by the request below, as urllib3 and browsers do
        body, headers, kind = source.next()
        start = time.perf_counter()
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0
            connection.close()
            local.connection = None  # a broken connection: the next request opens a new one
        with lock:
            samples.append(Sample(start, time.perf_counter() - start, status, kind))

    t0 = time.perf_counter()
    deadline = t0 + spec.duration_s
    if spec.mode == "closed":
        def client() -> None:
            while time.perf_counter() < deadline:
                send()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(max(1, spec.concurrency))]
    elif spec.mode == "open":
        if spec.rate <= 0:
            raise ValueError("open load needs a rate > 0")
        # a pool of clients started once: a thread started per request cost the shared cores
        # more than the requests did at a few hundred per second
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=spec.max_in_flight)
        slots = threading.BoundedSemaphore(spec.max_in_flight)

        def one() -> None:
            try:
                send()
            finally:
                slots.release()

        def scheduler() -> None:
            nonlocal saturated
            i = 0
            while True:
                due = t0 + i / spec.rate
                if due >= deadline:
                    return
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                i += 1
                if slots.acquire(blocking=False):
                    pool.submit(one)
                else:
                    saturated += 1
        threads = [threading.Thread(target=scheduler, daemon=True)]
    else:
        raise ValueError(f"unknown load mode {spec.mode!r}: closed or open")
    stallers, stalled = _stalled_uploads(spec, deadline)
    for t in stallers:  # first, so that the good requests meet the stalled uploads all phase long
        t.start()
    for t in threads:
        t.start()
    for t in threads + stallers:
        t.join()
    if spec.mode == "open":  # let the requests in flight finish (each is bounded by its timeout)
        pool.shutdown(wait=True)
    elapsed = time.perf_counter() - t0
    return summarize(spec, samples, elapsed, saturated, stalled)


def summarize(spec: LoadSpec, samples: list[Sample], elapsed: float, saturated: int = 0,
              stalled: list[tuple[int, float]] = ()) -> LoadResult:
    """The phase's figures from its samples (and the stalled uploads' answers)."""
    good = [s for s in samples if s.malformed is None]
    ok = [s.latency for s in good if s.status == 200]
    statuses: dict[str, int] = {}
    for s in good:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
    malformed: dict[str, dict[str, int]] = {}
    for s in samples:
        if s.malformed is not None:
            row = malformed.setdefault(s.malformed, {})
            row[str(s.status)] = row.get(str(s.status), 0) + 1
    latency = {f"p{q}": (round(float(np.percentile(ok, q)) * 1000, 2) if ok else None) for q in (50, 90, 99)}
    latency["max"] = round(max(ok) * 1000, 2) if ok else None
    begin = min((s.start for s in samples), default=0.0)
    thirds: dict[str, float | None] = {}
    for i, name in enumerate(("first", "second", "third")):
        part = [s.latency for s in good if s.status == 200
                and begin + i * elapsed / 3 <= s.start < begin + (i + 1) * elapsed / 3 + (1e9 if i == 2 else 0)]
        thirds[name] = round(float(np.percentile(part, 99)) * 1000, 2) if part else None
    stalled_statuses: dict[str, int] = {}
    for status, _ in stalled:
        stalled_statuses[str(status)] = stalled_statuses.get(str(status), 0) + 1
    answered = [held for status, held in stalled if status]
    hold = {"median": round(float(np.median(answered)), 2) if answered else None,
            "max": round(max(answered), 2) if answered else None}
    return LoadResult(spec=asdict(spec) | {"images": len(spec.images)}, seconds=round(elapsed, 2),
                      sent=len(samples), good=len(good), ok=len(ok),
                      throughput_rps=round(len(ok) / elapsed, 2) if elapsed > 0 else 0.0,
                      latency_ms=latency, statuses=statuses, malformed=malformed, client_saturated=saturated,
                      p99_ms_by_third=thirds, stalled=stalled_statuses, stalled_hold_s=hold if stalled else {})


def main(argv: list[str]) -> int:
    spec_path, out_path = argv
    spec = LoadSpec(**json.loads(Path(spec_path).read_text()))
    Path(out_path).write_text(json.dumps(asdict(run_load(spec)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
