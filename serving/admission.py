"""Admission, body reading and request metrics, as one plain ASGI middleware in front of the app.

An inference request goes through two bounded stages, so that a client who is slow to send its
body cannot hold a place that a request ready to run needs:

1. **upload**: at most ``max_uploads`` requests are having their body read at once; one more is
   answered 503 with Retry-After. The body must arrive within ``body_timeout_s`` of the headers,
   and no slower than ``min_body_rate`` bytes a second after the first ``body_grace_s`` (the
   deadline is ``grace + bytes received / rate``, capped at ``body_timeout_s``: Apache's
   mod_reqtimeout rule, ``body=GRACE,MinRate=RATE``); otherwise the client gets ``408`` and the
   connection is closed. A body over ``max_body_mb`` gets ``413`` (from its Content-Length at
   once, else as soon as it goes over), also closing the connection, so the rest is not read.
2. **inference**: only a request whose body has arrived takes one of ``limit`` places (decoded,
   queued or run); beyond them, 503 with Retry-After. While every place is taken, a new request
   is refused before its body is read, so refusals under overload cost next to nothing.

The inference endpoint (``serving.inference``) is then given the body; other requests go to the
app (FastAPI) as they came. Every request's route, status and latency go to the Prometheus
metrics, with the stages' occupancy, refusals and timeouts.

Why plain ASGI rather than FastAPI's ``@app.middleware("http")``: under overload most requests
are refusals, and each one then went through Starlette's BaseHTTPMiddleware, the routing and an
exception handler, about 1 ms each in Python, which the accepted requests then lacked. Measured
with `edgeport bench-serve` on gender-vit (tflite-int8-dynamic, server on one core, load generator
on the other, 8 s phases), before and after: at twice the sustained rate 212 against 471 accepted
req/s (of 925 and 1075 offered), p99 1244 against 467 ms; 16 clients, 514 against 597 req/s.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edgeport.serving.connections import BODY_COMPLETE, json_bytes
from edgeport.serving.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# The inference endpoint: (scope, route template, body, send) -> the status it answered.
Endpoint = Callable[[Scope, str, bytes, Send], Awaitable[int]]

# The routes that run the model (POST), with the template the metrics label them by.
_INFERENCE_ROUTES = [(re.compile(r"^/$"), "/"),
                     (re.compile(r"^/models/.+$"), "/models/{name:path}"),
                     (re.compile(r"^/v2/models/[^/]+/infer$"), "/v2/models/{name}/infer")]

CLIENT_CLOSED = 499  # nginx's status for a client that hung up before its answer; never sent, only counted


def inference_route(method: str, path: str) -> str | None:
    """The route template of an inference request, or None for any other request."""
    if method != "POST":
        return None
    return inference_path(path)


def inference_path(path: str) -> str | None:
    """The template of the inference route ``path`` is on, whatever the method; else None."""
    return next((template for pattern, template in _INFERENCE_ROUTES if pattern.match(path)), None)


@dataclass
class AdmissionLimits:
    """The bounds of the two stages (see the module docstring and `edgeport serve --help`)."""

    limit: int  # inference requests in progress (--max-queue)
    max_uploads: int = 128
    max_body_mb: float = 20.0
    body_timeout_s: float = 30.0
    body_grace_s: float = 5.0
    min_body_rate: float = 8 * 1024.0  # bytes per second after the grace; 0: no floor
    retry_after_s: int = 1

    @property
    def max_body(self) -> int:
        """The body limit in bytes."""
        return int(self.max_body_mb * 1024 * 1024)


class BodyRefused(Exception):
    """A body that will not be read to the end: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class ClientGone(Exception):
    """The client hung up while sending its body."""


class Admission:
    """The server's ASGI app: reads inference bodies within their limits, bounds both stages, hands
    the inference routes to ``inference`` and the rest to ``app``, counts every request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], *, limits: AdmissionLimits,
                 metrics: Metrics, inference: Endpoint) -> None:
        self.app, self.limits, self.metrics, self.inference = app, limits, metrics, inference
        # the event loop is one thread: plain counters are enough
        self.uploading = 0
        self.in_progress = 0
        metrics.watch_stages(lambda: self.uploading, lambda: self.in_progress)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        inference = inference_route(scope["method"], scope["path"])
        if inference is None:
            route = inference_path(scope["path"])
            if route is not None:  # an inference route asked with another method
                await self._answer(send, 405, f"{scope['method']} is not allowed here: POST", route, start,
                                   allow=b"POST")
                return
            await self._forward(scope, receive, send, start)
            return
        limits = self.limits
        if self.in_progress >= limits.limit:  # busy: refuse before reading a byte of the body
            await self._answer(send, 503, self._busy_message(), inference, start, retry=True, reason="queue")
            return
        if self.uploading >= limits.max_uploads:
            await self._answer(send, 503, f"server busy: {self.uploading} requests are sending their body, "
                                          f"at most {limits.max_uploads} (--max-uploads); retry later",
                               inference, start, retry=True, reason="uploads")
            return
        self.uploading += 1
        try:
            body = await self._read_body(scope, receive)
        except BodyRefused as exc:
            if exc.reason in ("deadline", "rate"):
                self.metrics.body_timeouts.labels(exc.reason).inc()
            await self._answer(send, exc.status, exc.message, inference, start, close=True)
            return
        except ClientGone:
            self.metrics.observe_request(inference, CLIENT_CLOSED, time.perf_counter() - start)
            return
        finally:
            self.uploading -= 1
        if self.in_progress >= limits.limit:  # the places filled while this body arrived
            await self._answer(send, 503, self._busy_message(), inference, start, retry=True, reason="queue")
            return
        self.in_progress += 1
        status = 500  # what is counted if the endpoint is cancelled before it answers
        try:
            status = await self.inference(scope, inference, body, send)
        finally:
            self.in_progress -= 1
            self.metrics.observe_request(inference, status, time.perf_counter() - start)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, or BodyRefused (408 too slow, 413 too large, 400 bad Content-Length)."""
        limits = self.limits
        max_body = limits.max_body
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BodyRefused(400, "Content-Length is not a number", "bad-length")
            if int(declared) > max_body:
                raise BodyRefused(413, f"body of {int(declared)} bytes is over the limit of {max_body} "
                                       f"(--max-body-mb {limits.max_body_mb:g})", "too-large")
        loop = asyncio.get_running_loop()
        begin = loop.time()
        cap = begin + limits.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        arrived = scope.get("extensions", {}).get(BODY_COMPLETE)  # set by serving.connections' protocol
        while True:
            if arrived is not None and arrived():  # receive() returns at once: no deadline to arm
                message = await receive()
            else:
                deadline = cap
                if limits.min_body_rate > 0:
                    deadline = min(cap, begin + limits.body_grace_s + size / limits.min_body_rate)
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise self._too_slow(size, loop.time() - begin, deadline >= cap) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                raise BodyRefused(413, f"body over the limit of {max_body} bytes "
                                       f"(--max-body-mb {limits.max_body_mb:g})", "too-large")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_slow(self, size: int, seconds: float, at_cap: bool) -> BodyRefused:
        limits = self.limits
        if at_cap:
            return BodyRefused(408, f"request body not complete within {limits.body_timeout_s:g} s "
                                    f"(--body-timeout-s): {size} bytes arrived", "deadline")
        return BodyRefused(408, f"request body too slow: {size} bytes in {seconds:.1f} s, under "
                                f"{limits.min_body_rate / 1024:g} KB/s after the first {limits.body_grace_s:g} s "
                                "(--min-body-rate-kb, --body-grace-s)", "rate")

    def _busy_message(self) -> str:
        return (f"server busy: {self.in_progress} requests in progress, at most {self.limits.limit} "
                "(--max-queue); retry later")

    async def _forward(self, scope: Scope, receive: Receive, send: Send, start: float) -> None:
        status = {"code": 500}  # what the client gets if the app raises before answering

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # set by the router on the scope it was given
            self.metrics.observe_request(getattr(route, "path", "unmatched"), status["code"],
                                         time.perf_counter() - start)

    async def _answer(self, send: Send, status: int, message: str, route: str, start: float, *,
                      retry: bool = False, close: bool = False, reason: str | None = None,
                      allow: bytes | None = None) -> None:
        body = json_bytes({"error": message})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry:
            headers.append((b"retry-after", str(self.limits.retry_after_s).encode()))
        if allow is not None:
            headers.append((b"allow", allow))
        if close:  # uvicorn closes the connection after this answer: the unread body is not read
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if reason is not None:
            self.metrics.refused.labels(reason).inc()
        self.metrics.observe_request(route, status, time.perf_counter() - start)


def header(scope: Scope, name: bytes) -> str | None:
    """The value of header ``name`` (lower-case bytes) in ``scope``, stripped; None when absent."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip()
    return None
