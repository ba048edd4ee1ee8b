"""The server's Prometheus metrics (prometheus-client), one registry per app."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edgeport.serving import connections

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """Requests and errors by route and status, latency, batch sizes, queue depth."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("edgeport_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("edgeport_request_seconds", "Request latency (receipt to response)",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("edgeport_batch_size", "Images per inference batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.inference = Histogram("edgeport_inference_seconds", "Runner time per batch",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batches_on_loop = Counter("edgeport_batches_on_loop", "Batches run on the event loop rather than "
                                       "the inference thread (a one-core server's short batches)",
                                       registry=self.registry)
        self.queue = Gauge("edgeport_queue_depth", "Images waiting for a batch", registry=self.registry)
        self.queue.set_function(queue_depth)
        self.uploads = Gauge("edgeport_uploads_in_progress", "Inference requests whose body is being read",
                             registry=self.registry)
        self.in_progress = Gauge("edgeport_inference_in_progress",
                                 "Inference requests with their body read (decoding, queued or running)",
                                 registry=self.registry)
        self.refused = Counter("edgeport_refused", "Inference requests refused with 503, by the bound that was full "
                               "(queue: --max-queue, uploads: --max-uploads)", ["bound"], registry=self.registry)
        self.body_timeouts = Counter("edgeport_body_timeouts", "Request bodies answered 408 (deadline: "
                                     "--body-timeout-s, rate: under --min-body-rate-kb)", ["reason"],
                                     registry=self.registry)
        self.registry.register(_ConnectionEvents())
        # the labelled children, looked up once: prometheus_client's labels() validates and locks on
        # every call, twice per request
        self._request_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def watch_stages(self, uploading: Callable[[], int], in_progress: Callable[[], int]) -> None:
        """Report the admission stages' occupancy (serving.admission) at each scrape."""
        self.uploads.set_function(uploading)
        self.in_progress.set_function(in_progress)

    def observe_batch(self, size: int, seconds: float, on_loop: bool) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        if on_loop:
            self.batches_on_loop.inc()

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        children = self._request_children.get((route, status))
        if children is None:
            children = self._request_children[(route, status)] = (self.requests.labels(route, str(status)),
                                                                  self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ConnectionEvents:
    """The connection guard's counts (serving.connections: per process, kept by the protocol)."""

    def collect(self):  # noqa: ANN201 (prometheus_client's collector protocol)
        yield CounterMetricFamily("edgeport_header_timeouts", "Connections closed with 408: headers not complete "
                                  "within --header-timeout-s", value=connections.COUNTS["header_timeouts"])
        yield CounterMetricFamily("edgeport_connections_refused", "Connections refused with 503 over "
                                  "--max-connections", value=connections.COUNTS["connections_refused"])
        yield CounterMetricFamily("edgeport_direct_requests", "Inference requests answered by the direct path, "
                                  "without the ASGI app (serving.direct)", value=connections.COUNTS["direct"])
