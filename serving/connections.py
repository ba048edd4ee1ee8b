"""Connection-level limits uvicorn does not have: a deadline for a request's headers, and a bound
on open connections.

uvicorn (0.55) times out only an idle keep-alive connection between two requests
(``timeout_keep_alive``, which `edgeport serve --keep-alive-s` sets). A connection that opens and
sends nothing, or sends its request line and headers a byte at a time, is held for ever: its
protocol arms no timer until a first response has been sent (``HttpToolsProtocol.connection_made``
starts none, and ``data_received`` cancels the keep-alive timer at the next request's first byte).
Enough of those exhaust the process's file descriptors. This subclass of uvicorn's httptools
protocol adds:

- **a header deadline**: from the moment a connection opens (or the next request on a kept-alive
  connection begins), its headers must be complete within ``header_timeout_s``; otherwise the
  client gets ``408`` and the connection is closed;
- **a bound on open connections**: one over ``max_connections`` gets ``503`` with Retry-After at
  once and is closed (ahead of uvicorn's ``limit_concurrency``, which only refuses once the
  headers are in, so it cannot refuse a connection that never sends them);
- **a deadline for a body nobody reads**: a request answered before its body arrived (a 503
  refusal, a 404 or 405) keeps its connection while the rest of the body is read and dropped, so
  that the client sees the answer (closing at once could reset the connection under it), but
  only for ``linger_s`` (nginx's ``lingering_timeout`` idea); then it is closed. uvicorn keeps
  such a connection for as long as body bytes keep coming (each one cancels its keep-alive
  timer), and once the body is done it arms no timer at all, so the idle connection stayed open.

- **a body that has arrived, said so**: each request's scope gets the ``BODY_COMPLETE`` extension,
  so that ``serving.admission`` reads a body already received without arming its deadline timer.

- **a response's head sent with its body**: uvicorn writes the status line and headers when the
  app starts the response and the body when it sends it, two writes and so two TCP segments on
  the socket for every answer; each request's cycle gets a transport that holds the head until
  the first body bytes (or the end of the response, or a close) and writes them together: one
  write per answer instead of two (strace, 1,000 requests: 1,012 writes against 1,971). On one
  core, 4 clients, gender-vit: 750 -> 762 req/s, medians of 6 alternating pairs (-0.7% to +7.1%
  a pair; docs/benchmarks.md, 2026-12-06 midday).

- **plain inference requests answered directly**: a request ``serving.direct`` may answer (judged
  by its headers) is held until the end of the read its headers ended in; if its body came with
  them, ``serving.direct`` answers it without an ASGI task and this protocol writes the answer as
  uvicorn's ``send`` would and ends the cycle; otherwise it goes to the app as any other.

The request body's own deadline and rate floor are enforced per request by ``serving.admission``.

The limits are module state, set by ``configure`` from ``create_app``: uvicorn loads the protocol
class by name in each worker process (``edgeport serve --workers N``), before that worker builds
its app, and the protocol reads them when a connection opens.
"""
from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

PROTOCOL = "edgeport.serving.connections:GuardedHttpToolsProtocol"  # what `edgeport serve` hands uvicorn as ``http``
# The ASGI scope extension this protocol sets on each request: a callable telling whether the whole
# body has arrived, so that ``receive()`` returns at once. serving.admission then reads it without
# arming a body deadline (asyncio.timeout: 2% of the server's time outside decoding and the runner).
BODY_COMPLETE = "edgeport.body_complete"


@dataclass
class ConnectionLimits:
    """What a connection may take (see `edgeport serve --help`)."""

    header_timeout_s: float = 10.0
    max_connections: int = 512
    linger_s: float = 5.0  # `edgeport serve` sets it to --body-grace-s
    retry_after_s: int = 1


LIMITS = ConnectionLimits()
COUNTS = {"header_timeouts": 0, "connections_refused": 0, "direct": 0}  # read by serving.metrics
DIRECT: Any | None = None  # the direct path of this process's app (``use_direct``)


def configure(limits: ConnectionLimits) -> None:
    """Set the limits every later connection of this process gets."""
    global LIMITS
    LIMITS = limits


def use_direct(direct: Any | None) -> None:
    """Hand this process's plain inference requests to ``direct`` (a ``serving.direct.DirectInference``;
    None: every request goes through the ASGI app)."""
    global DIRECT
    DIRECT = direct


# Starlette's JSONResponse settings; one encoder, since json.dumps builds a new one for each call
# that passes options
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_bytes(doc: Any) -> bytes:
    """``doc`` as the bytes Starlette's JSONResponse sends (compact, UTF-8), so that every answer of
    the server, from FastAPI's routes, the inference endpoint, the admission stage or this guard,
    is written alike."""
    return _ENCODER.encode(doc).encode()


def raw_response(status: int, reason: str, message: str, extra: list[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 response with a JSON ``{"error": message}`` body that closes the connection."""
    body = json_bytes({"error": message})
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
             f"content-length: {len(body)}", "connection: close", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a bound on open connections, and the direct path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self.holding: HeadWithBody | None = None  # the cycle's transport holding a response head now
        # a request the direct path may answer once its body is in: (cycle, route), until the end of
        # the read its headers came in (serving.direct); its app is this connection's own
        self._direct_waiting: tuple[Any, str] | None = None
        self._reading = False  # within data_received
        # the direct path, if it answers for the app this connection serves
        self._direct = DIRECT if DIRECT is not None and DIRECT.serves(self.app) else None

    def data_received(self, data: bytes) -> None:
        self._reading = True
        try:
            super().data_received(data)
        finally:
            self._reading = False
        waiting, self._direct_waiting = self._direct_waiting, None
        if waiting is not None:  # its body is still arriving: the ASGI path reads it, within its deadlines
            self._to_asgi(waiting[0])

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        direct = self._direct
        if direct is not None and app is self.app and not self.flow.write_paused:
            route = direct.route(cycle.scope, cycle.waiting_for_100_continue)
            if route is not None:
                if not cycle.more_body:  # a pipelined request, its body in: started from the loop, not
                    # from within the answer before it (one stack frame deeper for each request in the pipeline)
                    self.loop.call_soon(self._start_pipelined, cycle, app, route)
                    return
                if self._reading:  # as its headers end: wait for its body until the end of this read
                    self._direct_waiting = (cycle, route)
                    return
        super()._start_asgi_task(cycle, app)

    def _start_pipelined(self, cycle: Any, app: Any, route: str) -> None:
        if self.transport.is_closing():  # the connection went meanwhile
            return
        if not self._start_direct(cycle, route):
            super()._start_asgi_task(cycle, app)

    def _start_direct(self, cycle: Any, route: str) -> bool:
        # the cycle strongly: a pipelined request's cycle replaces it as the protocol's while it runs
        if not self._direct.start(cycle.scope, route, bytes(cycle.body), partial(self._respond_direct, cycle)):
            return False
        COUNTS["direct"] += 1
        return True

    def _respond_direct(self, cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Write a direct answer as uvicorn's ``send`` writes an ASGI one (status line, its default
        headers, ``connection: close`` when the connection ends), in one write, and end the cycle."""
        # the client went: nothing to write, as uvicorn's send does (a cycle the protocol no longer holds,
        # a pipelined one having replaced it, is not told: the transport is)
        if cycle.disconnected or self.transport.is_closing():
            return
        head = [STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            head += [name, b": ", value, b"\r\n"]
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        head += [b"\r\n", body]
        cycle.response_started = cycle.response_complete = True
        self.transport.write(b"".join(head))
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if LIMITS.max_connections and len(self.connections) > LIMITS.max_connections:
            COUNTS["connections_refused"] += 1
            transport.write(raw_response(
                503, "Service Unavailable",
                f"too many connections: {len(self.connections) - 1} open, at most {LIMITS.max_connections} "
                "(--max-connections); retry later", [("retry-after", str(LIMITS.retry_after_s))]))
            transport.close()
            return
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # a request begins: the connection is not idle. uvicorn cancels its keep-alive timer only as
        # a read starts, but a direct answer given within a read (a 404 at once) arms it before the
        # next request in the same read is parsed
        self._unset_keepalive_if_required()
        # the next request on a kept-alive connection: its headers are timed from their first byte
        # (the first request's were timed from the connection's opening; that timer keeps running)
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:  # a new request's cycle (not an upgrade)
            waiting = self._direct_waiting
            if waiting is None or waiting[0] is not cycle:  # the direct path needs neither (see _to_asgi)
                self._guard_cycle(cycle)

    def _guard_cycle(self, cycle: Any) -> None:
        """Give a request's cycle what the ASGI path uses: the transport that sends the head with the
        body, and the scope's BODY_COMPLETE."""
        cycle.transport = HeadWithBody(self.transport, cycle, self)
        # weakly, as the scope is the cycle's own (see HeadWithBody)
        cycle.scope.setdefault("extensions", {})[BODY_COMPLETE] = partial(_body_complete, weakref.ref(cycle))

    def _to_asgi(self, cycle: Any) -> None:
        """Hand a request the direct path waited for to the ASGI app after all."""
        self._guard_cycle(cycle)
        super()._start_asgi_task(cycle, self.app)

    def on_response_complete(self) -> None:
        if self.holding is not None:  # a response without body bytes (HEAD): its head goes now
            self.holding.flush()
        super().on_response_complete()
        if self.cycle is not None and self.cycle.response_complete and self.cycle.more_body \
                and not self.transport.is_closing() and self._linger_timer is None:
            # answered before its body was read: drop the rest, for a while (a pipelined request's cycle
            # is not response_complete: its body is read as usual)
            self._linger_timer = self.loop.call_later(LIMITS.linger_s, self.transport.close)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        waiting = self._direct_waiting
        if waiting is not None and waiting[0] is self.cycle:  # its body came with its headers
            self._direct_waiting = None
            if not self._start_direct(*waiting):
                self._to_asgi(waiting[0])
        if self._linger_timer is not None:  # the unread body is done: an ordinary kept-alive connection again
            self._linger_timer.cancel()
            self._linger_timer = None
            if self.timeout_keep_alive_task is None and not self.transport.is_closing() and not self.pipeline:
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and LIMITS.header_timeout_s > 0:
            self._header_timer = self.loop.call_later(LIMITS.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        COUNTS["header_timeouts"] += 1
        if self.cycle is None or self.cycle.response_complete:  # never into the middle of a response
            self.transport.write(raw_response(
                408, "Request Timeout",
                f"request headers not complete within {LIMITS.header_timeout_s:g} s (--header-timeout-s)"))
        self.transport.close()


def _body_complete(cycle_ref: weakref.ReferenceType) -> bool:
    """Whether the request of uvicorn's cycle ``cycle_ref`` has its whole body in (``BODY_COMPLETE``)."""
    cycle = cycle_ref()
    return cycle is not None and not cycle.more_body and cycle.message_event.is_set()


class HeadWithBody:
    """One request cycle's transport: the response's head (uvicorn's first write once the response
    has started) is held and written together with the first body bytes, so that a small answer
    leaves in one TCP segment instead of two. Anything written before the response starts (a
    ``100 Continue``) and every later write go straight through; a close, or the response ending
    without body bytes, sends the held head first."""

    __slots__ = ("_transport", "_cycle", "_protocol", "_head", "_head_seen")

    def __init__(self, transport: asyncio.Transport, cycle: Any, protocol: GuardedHttpToolsProtocol) -> None:
        # the cycle weakly, as it holds this as its transport: a cycle of references would leave each
        # finished request, body and all, to the garbage collector instead of freeing it at once
        self._transport, self._cycle, self._protocol = transport, weakref.ref(cycle), protocol
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if not self._head_seen and self._cycle().response_started:  # only its cycle writes here: alive
            self._head_seen, self._head = True, data
            self._protocol.holding = self
            return
        if self._head is not None:
            data = self._head + data
            self._release()
        self._transport.write(data)

    def flush(self) -> None:
        """Write the held head, if any."""
        if self._head is not None:
            head = self._head
            self._release()
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def _release(self) -> None:
        self._head = None
        if self._protocol.holding is self:
            self._protocol.holding = None

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the socket's own
        return getattr(self._transport, name)
