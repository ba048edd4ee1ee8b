"""What `edgeport serve` was told: one dataclass, whose defaults are the command line's defaults.

Kept apart from ``serving.app`` (and free of its imports) so that the command line can build its
parser from these defaults without loading FastAPI, uvicorn or a runtime.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeport.serving.admission import AdmissionLimits
    from edgeport.serving.connections import ConnectionLimits


@dataclass
class ServeSettings:
    """What ``edgeport serve`` was told (see its --help)."""

    model_dir: str
    variant: str | None = None
    threads: int = 2
    max_batch: int = 8
    max_wait_ms: float = 0.0  # greedy batching: see serving.batcher
    max_queue: int = 64  # `edgeport serve` derives it from the variant's latency (default_max_queue)
    max_body_mb: float = 20.0
    timeout_s: float = 30.0
    retry_after_s: int = 1
    # what a client may take before its request is ready (serving.admission, serving.connections)
    max_uploads: int = 128
    body_timeout_s: float = 30.0
    body_grace_s: float = 5.0
    min_body_rate_kb: float = 8.0
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0  # uvicorn's own timeout_keep_alive
    max_connections: int = 512

    def admission_limits(self) -> AdmissionLimits:
        from edgeport.serving.admission import AdmissionLimits

        return AdmissionLimits(limit=self.max_queue, max_uploads=self.max_uploads,
                               max_body_mb=self.max_body_mb, body_timeout_s=self.body_timeout_s,
                               body_grace_s=self.body_grace_s, min_body_rate=self.min_body_rate_kb * 1024.0,
                               retry_after_s=self.retry_after_s)

    def connection_limits(self) -> ConnectionLimits:
        from edgeport.serving.connections import ConnectionLimits

        return ConnectionLimits(header_timeout_s=self.header_timeout_s, max_connections=self.max_connections,
                                linger_s=self.body_grace_s, retry_after_s=self.retry_after_s)

    def limits(self) -> dict[str, Any]:
        """What ``GET /metadata`` shows under ``limits``: every bound a client can meet."""
        return {name: getattr(self, name) for name in (
            "max_batch", "max_wait_ms", "max_queue", "max_body_mb", "timeout_s", "threads", "max_uploads",
            "body_timeout_s", "body_grace_s", "min_body_rate_kb", "header_timeout_s", "keep_alive_s",
            "max_connections", "max_images_per_request")}

    @property
    def max_images_per_request(self) -> int:
        """More images than the queue holds could never be run together: such a request gets 400."""
        return self.max_queue
