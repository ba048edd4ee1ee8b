"""The direct path of `edgeport serve` (serving.direct): a plain inference request whose body came
with its headers is answered from the protocol, with the bytes the ASGI path would send; anything
else still goes through the ASGI app. Over raw sockets, so that when the body arrives is ours to say."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
import requests

from conftest import metric_value, serving
from edgeport.serving.direct import DirectInference
from edgeport.serving.payloads import RequestError
from test_serve_hostile import _connect, _good, _response


def _request(body: bytes, path: str = "/", extra: str = "") -> tuple[bytes, bytes]:
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode()
    return head, body


def _responses(sock, count: int) -> list[tuple[int, bytes]]:
    """(status, body) of the next ``count`` answers on ``sock``, pipelined ones split by their Content-Length."""
    sock.settimeout(10)
    data, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} answers"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(data) < length:
            data += sock.recv(65536)
        out.append((int(head.split()[1]), data[:length]))
        data = data[length:]
    return out


def _direct_count(url: str) -> float:
    return metric_value(requests.get(f"{url}/metrics", timeout=5).text, "edgeport_direct_requests_total")


def _without_date(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "date"}


@pytest.fixture(scope="module")
def server(validated_tiny):
    with serving(validated_tiny, "--variant", "onnx-fp32", "--keep-alive-s", "1") as running:
        yield running[0]


def test_the_direct_path_answers_what_the_asgi_path_answers(server, faces_dir):
    """Each request twice on one kept-alive connection: its body with its headers (the direct path:
    the counter goes up) and its body 0.3 s later (the ASGI path: it does not). Status, headers
    and body are the same bytes, for an answer, a 404 and an image that will not decode."""
    images = sorted(faces_dir.rglob("*.jpg"))
    cases = [(images[0].read_bytes(), "/", 200), (images[1].read_bytes(), "/models/tiny-vit", 200),
             (images[0].read_bytes(), "/models/other", 404), (images[0].read_bytes()[:300], "/", 400)]
    sock = _connect(server)
    for body, path, status in cases:
        head, body = _request(body, path)
        before = _direct_count(server)
        sock.sendall(head + body)
        direct = _response(sock, check_closed=False)
        after_direct = _direct_count(server)
        sock.sendall(head)
        time.sleep(0.3)
        sock.sendall(body)
        late = _response(sock, check_closed=False)
        assert direct[0] == late[0] == status, (path, direct[2], late[2])
        assert direct[2] == late[2] and _without_date(direct[1]) == _without_date(late[1])
        # a truncated JPEG fails its header peek: the direct path leaves it to the ASGI path, which answers 400
        assert after_direct - before == (0 if status == 400 else 1), path
        assert _direct_count(server) == after_direct  # the late body went the ASGI way
    sock.close()


def test_pipelined_requests_are_answered_in_order(server, faces_dir):
    """Three requests in one write: each answered in turn, the first while the others wait for it."""
    images = sorted(faces_dir.rglob("*.jpg"))
    alone = [requests.post(server, data=p.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=10).content
             for p in images[:2]]
    sock = _connect(server)
    sock.sendall(b"".join(b"".join(_request(body, path)) for body, path in
                          [(images[0].read_bytes(), "/"), (images[0].read_bytes(), "/models/other"),
                           (images[1].read_bytes(), "/")]))
    answers = _responses(sock, 3)
    assert [a[0] for a in answers] == [200, 404, 200]
    assert answers[0][1] == alone[0] and answers[2][1] == alone[1]
    sock.close()


def test_hundreds_of_pipelined_requests_in_one_write(server, faces_dir):
    """An image, then 400 pipelined requests answered at once (404), then an image, in one write: all
    answered, in order (each of the 404s waits for the image before it, then goes in its own turn of
    the loop rather than one stack frame deeper than the one before)."""
    good = _good(faces_dir)
    cases = [(good, "/") if i in (0, 401) else (b"x", "/models/other") for i in range(402)]
    sock = _connect(server)
    sock.sendall(b"".join(b"".join(_request(body, path)) for body, path in cases))
    answers = _responses(sock, len(cases))
    assert [status for status, _ in answers] == [200 if i in (0, 401) else 404 for i in range(402)]
    sock.close()
    assert requests.post(server, data=good, headers={"Content-Type": "image/jpeg"}, timeout=10).status_code == 200


def test_an_answer_given_within_a_read_does_not_time_out_the_next_request(server, faces_dir):
    """A 404 answered at once, then, in the same write, a request whose body takes longer than the
    keep-alive timeout (1 s here) to arrive: the connection stays open for it (the keep-alive timer
    armed by the first answer is for an idle connection, and this one is not)."""
    good = _good(faces_dir)
    first = b"".join(_request(good, "/models/other"))
    head, body = _request(good)
    sock = _connect(server)
    sock.sendall(first + head + body[:100])
    time.sleep(1.5)
    sock.sendall(body[100:])
    answers = _responses(sock, 2)
    assert [status for status, _ in answers] == [404, 200]
    sock.close()


def test_connection_close_is_honoured(server, faces_dir):
    """A client that says Connection: close gets its answer with connection: close, and the socket closed."""
    sock = _connect(server)
    sock.sendall(b"".join(_request(_good(faces_dir), extra="Connection: close\r\n")))
    status, headers, _, closed = _response(sock)
    assert status == 200 and headers.get("connection") == "close" and closed
    sock.close()


# -- DirectInference in one process, its endpoint stubbed: the answers that need a slow or failing runner


class _Endpoint:
    """What DirectInference uses of serving.inference.InferenceEndpoint, with a future of ours."""

    def __init__(self, loop: asyncio.AbstractEventLoop, submit_error: RequestError | None = None) -> None:
        self.future = loop.create_future()
        self.submit_error = submit_error
        self.settings = SimpleNamespace(timeout_s=0.05)

    def ready(self) -> bool:
        return True

    def check_route(self, route: str, path: str) -> None:
        pass

    def inline_image(self, body: bytes, content_type: str | None) -> object:
        return object()

    def pixels_of(self, peeked: object) -> str:
        return "pixels"

    def submit(self, pixels: list) -> list[asyncio.Future]:
        if self.submit_error is not None:
            raise self.submit_error
        return [self.future]

    def scores_of(self, row: object) -> list[dict]:
        return [{"label": "a", "score": float(row)}]

    def encode(self, status: int, answer: object) -> tuple[list, bytes]:
        return [], repr(answer).encode()

    def timeout_error(self) -> RequestError:
        return RequestError(504, "too late")

    @staticmethod
    def internal_error(method: str, path: str, exc: BaseException | None = None) -> tuple[int, dict]:
        return 500, {"error": "internal"}


def _run_direct(outcome: str) -> tuple[list[tuple[int, bytes]], list[tuple[str, int]], list[int], bool]:
    """Start one request on a DirectInference and let ``outcome`` happen to its image; returns the
    answers written, the metrics observed, admission's in-progress count while it ran, and what
    ``start`` returned."""

    async def go():
        loop = asyncio.get_running_loop()
        endpoint = _Endpoint(loop, RequestError(503, "queue full") if outcome == "queue full" else None)
        observed: list[tuple[str, int]] = []
        admission = SimpleNamespace(in_progress=0, uploading=0, limits=SimpleNamespace(limit=1, max_uploads=1),
                                    metrics=SimpleNamespace(observe_request=lambda r, s, t: observed.append((r, s))))
        if outcome == "admission full":
            admission.in_progress = 1
        answers: list[tuple[int, bytes]] = []
        direct = DirectInference(admission, endpoint)
        taken = direct.start({"method": "POST", "path": "/", "headers": []}, "/", b"jpeg",
                             lambda status, headers, body: answers.append((status, body)))
        in_progress = [admission.in_progress]
        if outcome == "result":
            endpoint.future.set_result(0.5)
        elif outcome == "runner failed":
            endpoint.future.set_exception(RuntimeError("boom"))
        await asyncio.sleep(0.1)  # past the timeout of 0.05 s
        in_progress.append(admission.in_progress)
        return answers, observed, in_progress, taken

    return asyncio.run(go())


def test_direct_answers_for_a_result_a_timeout_a_failure_and_a_full_queue():
    answers, observed, in_progress, taken = _run_direct("result")
    assert taken and answers == [(200, b"[{'label': 'a', 'score': 0.5}]")] and observed == [("/", 200)]
    assert in_progress == [1, 0]  # a place taken while it ran, given back after
    answers, observed, in_progress, taken = _run_direct("timeout")
    assert taken and answers == [(504, b"{'error': 'too late'}")] and observed == [("/", 504)] and in_progress == [1, 0]
    answers, observed, in_progress, taken = _run_direct("runner failed")
    assert taken and answers == [(500, b"{'error': 'internal'}")] and observed == [("/", 500)] and in_progress == [1, 0]
    answers, observed, in_progress, taken = _run_direct("queue full")
    assert taken and answers == [(503, b"{'error': 'queue full'}")] and observed == [("/", 503)] and in_progress == [0, 0]


def test_a_request_admission_would_refuse_is_left_to_it():
    answers, observed, in_progress, taken = _run_direct("admission full")
    assert not taken and answers == [] and observed == [] and in_progress == [1, 1]


def test_the_direct_path_answers_only_for_its_own_app():
    """uvicorn runs the app inside its own middleware (proxy headers): found through it; another
    app in the same process is not answered by this path."""
    admission = SimpleNamespace()
    direct = DirectInference(admission, _Endpoint.__new__(_Endpoint))
    assert direct.serves(admission) and direct.serves(SimpleNamespace(app=SimpleNamespace(app=admission)))
    assert not direct.serves(SimpleNamespace(app=SimpleNamespace())) and not direct.serves(object())
