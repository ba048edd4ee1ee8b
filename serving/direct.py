"""The direct path: a plain inference request whose body has arrived, answered from the
connection's protocol without an ASGI task.

Every request to ``POST /`` or ``/models/{name}`` that uvicorn hands the app goes through a task,
ASGI's scope, receive and send messages, admission's body reading, the endpoint's coroutines and
uvicorn's header checks on the way out: about 0.1 ms of Python a request. For a model that runs an
image in under a millisecond that was the largest part of the server's cost outside decoding and
the runner. Measured on gender-vit (tflite-int8-dynamic, server on one core, 4 and 16 clients):
a server answering straight from the protocol, with the same batcher, metrics and timeout, used
about 0.13 ms less CPU a request than the ASGI path (docs/decisions/serving-direct-path.md).

So ``serving.connections``' protocol gives this path a request when, as its headers end:

- it is a POST to ``/`` or ``/models/{name}`` with a Content-Length within ``--max-body-mb``, no
  Transfer-Encoding and no ``Expect: 100-continue``, and nothing is waiting to be written to the
  client (a client that does not read its answers is left to the ASGI path, which waits for it);

and then answers it here only if its whole body came with its headers (in the same read) and is
one raw image small enough to decode on the event loop, while admission would admit it (both of
its stages below their bounds) and the server is ready. Everything else (a body still arriving, whose deadline and rate floor admission
enforces; JSON bodies; large images; the v2 routes; refusals, which admission counts) goes to
the ASGI path as before, with the body uvicorn has already buffered. The answers are the same
bytes either path sends (the same endpoint code builds them), the request takes one of
admission's places while it is in progress, its latency and status go to the same metrics, and a
pipelined request waits for it as uvicorn makes it wait for any other.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from edgeport.serving.admission import Admission, header, inference_path
from edgeport.serving.inference import InferenceEndpoint
from edgeport.serving.payloads import RequestError

# (status, headers, body) -> None: writes a complete answer on the request's connection
Respond = Callable[[int, list[tuple[bytes, bytes]], bytes], None]
DIRECT_ROUTES = ("/", "/models/{name:path}")  # the routes this path answers (the v2 route's JSON goes the ASGI way)


class DirectInference:
    """Answers the plain inference requests the protocol hands it (see the module docstring)."""

    def __init__(self, admission: Admission, endpoint: InferenceEndpoint) -> None:
        self.admission, self.endpoint = admission, endpoint

    def serves(self, app: Any) -> bool:
        """Whether ``app`` (what uvicorn runs: this path's admission, maybe inside uvicorn's own
        middleware) is the app this path answers for, so that a process holding another app (a
        test, an embedding program) never has its requests answered with this model."""
        for _ in range(4):  # uvicorn wraps the app in at most a couple of layers (proxy headers, ASGI2)
            if app is self.admission:
                return True
            app = getattr(app, "app", None)
        return False

    def route(self, scope: dict[str, Any], expect_100_continue: bool) -> str | None:
        """The route template of a request this path may answer, judged by its headers; else None."""
        if scope["method"] != "POST" or expect_100_continue:
            return None
        path = scope["path"]
        route = "/" if path == "/" else inference_path(path)  # "/" first: the common case, without a regex
        if route not in DIRECT_ROUTES:
            return None
        length = header(scope, b"content-length")
        if header(scope, b"transfer-encoding") is not None or length is None or not length.isdigit() \
                or int(length) > self.admission.limits.max_body:
            return None  # admission answers these (400, 413) or reads a chunked body within its deadlines
        return route

    def start(self, scope: dict[str, Any], route: str, body: bytes, respond: Respond) -> bool:
        """Answer the request of ``scope`` (its whole ``body`` in) through ``respond``, now or when its
        image has run; False, having done nothing, when the ASGI path should answer it instead."""
        admission, endpoint = self.admission, self.endpoint
        limits = admission.limits
        if admission.in_progress >= limits.limit or admission.uploading >= limits.max_uploads or not endpoint.ready():
            return False  # admission refuses it (either stage full) or the endpoint does, with their message and count
        begin = time.perf_counter()
        try:
            endpoint.check_route(route, scope["path"])
            peeked = endpoint.inline_image(body, header(scope, b"content-type"))
            if peeked is None:
                return False
            future, = endpoint.submit([endpoint.pixels_of(peeked)])
        except RequestError as exc:
            self._finish(respond, route, begin, *exc.answer())
            return True
        except Exception:
            self._finish(respond, route, begin, *endpoint.internal_error(scope["method"], scope["path"]))
            return True
        admission.in_progress += 1
        # the same timeout as the ASGI path's: past it the image is skipped and the client gets 504
        timer = asyncio.get_running_loop().call_later(endpoint.settings.timeout_s, future.cancel)
        future.add_done_callback(lambda done: self._answer(done, timer, scope, respond, route, begin))
        return True

    def _answer(self, future: asyncio.Future, timer: asyncio.TimerHandle, scope: dict[str, Any], respond: Respond,
                route: str, begin: float) -> None:
        timer.cancel()
        self.admission.in_progress -= 1
        endpoint = self.endpoint
        if future.cancelled():  # only the timer cancels it
            status, answer = endpoint.timeout_error().answer()
        elif future.exception() is not None:  # the runner failed: logged with its traceback, as the ASGI path logs it
            status, answer = endpoint.internal_error(scope["method"], scope["path"], future.exception())
        else:
            status, answer = 200, endpoint.scores_of(future.result())
        self._finish(respond, route, begin, status, answer)

    def _finish(self, respond: Respond, route: str, begin: float, status: int, answer: Any) -> None:
        headers, payload = self.endpoint.encode(status, answer)
        respond(status, headers, payload)
        self.admission.metrics.observe_request(route, status, time.perf_counter() - begin)
