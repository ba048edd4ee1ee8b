"""serving.connections.HeadWithBody: a response's head leaves with its body in one write, and
nothing is held that a client waits for (100 Continue, HEAD answers, streamed chunks, closes)."""
from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from edgeport.serving.connections import GuardedHttpToolsProtocol


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
    if path == "/echo":  # reads the body (after a 100 Continue when the client asked for one)
        body = b""
        while True:
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


async def _exchange(request: bytes, settle: int = 20) -> tuple[list[bytes], bool]:
    config = uvicorn.Config(_app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="critical", access_log=False)
    config.load()
    protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                        _loop=asyncio.get_running_loop())
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
