"""serving.connections' protocol at the level of one connection: a response's head leaves with its
body in one write (HeadWithBody), nothing is held that a client waits for (100 Continue, HEAD
answers, streamed chunks, closes), and the BODY_COMPLETE extension tells the app whether the whole
body is in; serving.admission reads such a body without arming its deadline."""
from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import uvicorn
from uvicorn.server import ServerState

from edgeport.serving import admission
from edgeport.serving.admission import Admission, AdmissionLimits
from edgeport.serving.connections import BODY_COMPLETE, GuardedHttpToolsProtocol
from edgeport.serving.metrics import Metrics

SEEN: list[tuple[str, bool]] = []  # /complete: what BODY_COMPLETE said, before and after reading


class _Transport(asyncio.Transport):
    """A socket that records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path in ("/echo", "/complete"):  # reads the body (after a 100 Continue when the client asked for one)
        noted = scope["extensions"][BODY_COMPLETE] if path == "/complete" else None  # notes what it said
        if noted is not None:
            SEEN.append(("before", noted()))
        body = b""
        while True:
            if noted is not None:
                SEEN.append(("receive", noted()))
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail-after-start":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("the app failed after starting its answer")
    else:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5"), (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})


def _protocol() -> GuardedHttpToolsProtocol:
    config = uvicorn.Config(_app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="critical", access_log=False)
    config.load()
    return GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                    _loop=asyncio.get_running_loop())


async def _exchange(request: bytes, settle: int = 20) -> tuple[list[bytes], bool]:
    protocol = _protocol()
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(settle):
        await asyncio.sleep(0)
    closed = transport.closed  # before the client goes (uvicorn then closes its side)
    protocol.connection_lost(None)
    return transport.writes, closed


def test_a_response_leaves_in_one_write_head_first():
    writes, closed = asyncio.run(_exchange(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert len(writes) == 1 and not closed
    head, body = writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 5" in head and body == b"hello"


def test_two_requests_on_one_connection_get_one_write_each_in_order():
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    writes, _ = asyncio.run(_exchange(request + request))  # pipelined
    assert len(writes) == 2 and all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b"hello") for w in writes)


def test_a_head_request_gets_its_head_though_no_body_follows():
    writes, _ = asyncio.run(_exchange(b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"\r\n\r\n")


def test_100_continue_is_not_held_and_the_answer_follows():
    writes, _ = asyncio.run(_exchange(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n"
                                      b"expect: 100-continue\r\n\r\nabcd"))
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(writes) == 2 and writes[1].startswith(b"HTTP/1.1 200 OK") and writes[1].endswith(b"abcd")


def test_streamed_chunks_go_out_as_they_come_the_head_with_the_first():
    writes, _ = asyncio.run(_exchange(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert writes[0].startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in writes[0]
    assert writes[0].endswith(b"3\r\none\r\n")  # the head and the first chunk together
    assert writes[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]


def test_an_app_failing_after_its_head_still_sends_the_head_before_closing():
    writes, closed = asyncio.run(_exchange(b"GET /fail-after-start HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert closed and len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK")


def test_body_complete_says_whether_the_whole_body_is_in():
    SEEN.clear()
    writes, _ = asyncio.run(_exchange(b"POST /complete HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd"))
    assert writes[0].endswith(b"abcd") and SEEN == [("before", True), ("receive", True)]

    async def in_two_parts() -> tuple[list[bytes], bool]:
        protocol, transport = _protocol(), _Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"POST /complete HTTP/1.1\r\nhost: x\r\ncontent-length: 8\r\n\r\nabcd")
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.data_received(b"efgh")
        once_in = protocol.cycle.scope["extensions"][BODY_COMPLETE]()  # before the app reads it
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport.writes, once_in

    SEEN.clear()
    writes, once_in = asyncio.run(in_two_parts())
    assert writes[0].endswith(b"abcdefgh") and once_in
    # half the body in: not complete, though the first receive returns those bytes at once
    assert SEEN == [("before", False), ("receive", False), ("receive", False)]


def test_a_finished_request_is_freed_without_the_garbage_collector():
    """The extension refers to its cycle weakly (the cycle holds the scope that holds it): a
    request's cycle, body included, is freed once the connection's next request replaces it."""
    request = b"POST /complete HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcd"

    async def two_requests() -> tuple[weakref.ref, int]:
        protocol, transport = _protocol(), _Transport()
        protocol.connection_made(transport)
        protocol.data_received(request)
        first = weakref.ref(protocol.cycle)
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.data_received(request)
        for _ in range(20):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return first, len(transport.writes)

    gc.collect()
    gc.disable()
    try:
        first, answers = asyncio.run(two_requests())
        assert answers == 2 and first() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("complete", [True, False])
def test_admission_arms_a_body_deadline_only_for_a_body_still_arriving(monkeypatch, complete):
    armed: list[float] = []
    timeout_at = asyncio.timeout_at

    def counting(when):
        armed.append(when)
        return timeout_at(when)

    monkeypatch.setattr(admission.asyncio, "timeout_at", counting)
    parts = [{"type": "http.request", "body": b"ab", "more_body": True},
             {"type": "http.request", "body": b"cd", "more_body": False}]

    async def receive():
        return parts.pop(0)

    async def read() -> bytes:
        stage = Admission(_app, limits=AdmissionLimits(limit=4), metrics=Metrics(lambda: 0),
                          inference=None)  # type: ignore[arg-type]
        scope = {"type": "http", "headers": [(b"content-length", b"4")],
                 "extensions": {BODY_COMPLETE: lambda: complete}}
        return await stage._read_body(scope, receive)

    assert asyncio.run(read()) == b"abcd"
    assert len(armed) == (0 if complete else 2)
