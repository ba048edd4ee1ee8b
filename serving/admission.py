"""Admission and request metrics, as one plain ASGI middleware in front of the app.

At most ``limit`` inference requests are in the server at once (being read, decoded, queued or
run); one more is answered 503 with Retry-After at once, before its body is read or the app
routes it. Every request's route, status and latency go to the Prometheus metrics.

Why plain ASGI rather than FastAPI's ``@app.middleware("http")``: under overload most requests
are refusals, and each one then went through Starlette's BaseHTTPMiddleware, the routing and an
exception handler, about 1 ms each in Python, which the accepted requests then lacked. Measured
with `edgeport bench-serve` on gender-vit (tflite-int8-dynamic, server on one core, load generator
on the other, 8 s phases), before and after: at twice the sustained rate 212 against 471 accepted
req/s (of 925 and 1075 offered), p99 1244 against 467 ms; 16 clients, 514 against 597 req/s.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from serving.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The routes that run the model (POST), with the template the metrics label them by.
_INFERENCE_ROUTES = [(re.compile(r"^/$"), "/"),
                     (re.compile(r"^/models/.+$"), "/models/{name:path}"),
                     (re.compile(r"^/v2/models/[^/]+/infer$"), "/v2/models/{name}/infer")]


def inference_route(method: str, path: str) -> str | None:
    """The route template of an inference request, or None for any other request."""
    if method != "POST":
        return None
    return next((template for pattern, template in _INFERENCE_ROUTES if pattern.match(path)), None)


class Admission:
    """ASGI middleware: bound the inference requests in progress; count every request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, limit: int, metrics: Metrics,
                 retry_after_s: int = 1) -> None:
        self.app, self.limit, self.metrics, self.retry_after_s = app, limit, metrics, retry_after_s
        self.in_progress = 0  # the event loop is one thread: a plain counter is enough

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        inference = inference_route(scope["method"], scope["path"])
        if inference is not None and self.in_progress >= self.limit:
            await self._refuse(send)
            self.metrics.observe_request(inference, 503, time.perf_counter() - start)
            return
        status = {"code": 500}  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        if inference is not None:
            self.in_progress += 1
        try:
            await self.app(scope, receive, sending)
        finally:
            if inference is not None:
                self.in_progress -= 1
            route = scope.get("route")  # set by the router on the scope it was given
            self.metrics.observe_request(getattr(route, "path", inference or "unmatched"), status["code"],
                                         time.perf_counter() - start)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"server busy: {self.in_progress} requests in progress, at most {self.limit} "
                                    "(--max-queue); retry later"}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})
