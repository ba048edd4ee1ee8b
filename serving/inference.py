"""The inference routes (``POST /``, ``/models/{name}``, ``/v2/models/{name}/infer``) as one plain
ASGI endpoint, which ``serving.admission`` calls with the body it has read.

An image goes through the same decoding (``Preprocessing.open``, the model's decode mode),
preprocessing (``validation.preprocess.Preprocessing``) and runner as validation, so the scores
served are the logits the harness judged; requests' images are batched (``serving.batcher``).

Why not FastAPI routes: between uvicorn and a route handler a request passes a dozen ASGI layers
(FastAPI's and Starlette's error, exception, telemetry, body-limit and exit-stack middleware, the
router, a Request object, a Response object), each wrapping ``send`` again; for a model that runs
an image in under a millisecond that was a fifth of the server's time per request. The other
routes (health, metadata, metrics, v2 metadata) stay FastAPI's.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from edgeport.serving.admission import header
from edgeport.serving.batcher import Batcher, QueueFull
from edgeport.serving.connections import json_bytes
from edgeport.serving.payloads import (Parsed, RequestError, b64_bytes, check_count, decode_image, load_json,
                                       parse_body, peek_raw_image, ranked, short_repr)
from edgeport.serving.selection import ServedModel
from edgeport.serving.settings import ServeSettings

if TYPE_CHECKING:
    from PIL import Image

    from edgeport.validation.jpeg_turbo import TurboJpeg

log = logging.getLogger("edgeport.serve")
Send = Callable[[dict[str, Any]], Awaitable[None]]

# A raw image up to this many pixels (by its header) is decoded and preprocessed on the event loop:
# handing it to the thread pool and back cost more than decoding it (gender-vit, 200x200 JPEGs, one
# core, 16 clients: 547 -> 581 req/s, docs/benchmarks.md 2026-12-06). Larger ones, JSON bodies and
# the v2 routes go to the thread pool, so that one big image never holds the loop for long (a
# 512x512 JPEG decodes in about 1 ms).
INLINE_DECODE_PIXELS = 512 * 512


class InferenceEndpoint:
    """Answers the inference routes of one served model: ``await endpoint(scope, route, body, send)``."""

    def __init__(self, model: ServedModel, batcher: Batcher, settings: ServeSettings,
                 ready: Callable[[], bool]) -> None:
        self.model, self.batcher, self.settings, self.ready = model, batcher, settings, ready
        self.default_function = "sigmoid" if model.multi_label or len(model.labels) == 1 else "softmax"
        self.max_images = settings.max_images_per_request
        self.pixel_shape = [model.channels, model.preprocessing.height, model.preprocessing.width]

    async def __call__(self, scope: dict[str, Any], route: str, body: bytes, send: Send) -> int:
        """Answer one request to ``route`` (a template of ``serving.admission.inference_route``);
        returns the status sent. Errors are answered as JSON ``{"error": ...}``, never raised."""
        try:
            self.check_route(route, scope["path"])
            if route == "/v2/models/{name}/infer":
                answer = await self._v2_infer(body)
            else:
                answer = await self._classify(body, header(scope, b"content-type"))
            status = 200
        except RequestError as exc:
            status, answer = exc.answer()
        except Exception:
            status, answer = self.internal_error(scope["method"], scope["path"])
        headers, payload = self.encode(status, answer)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return status

    def check_route(self, route: str, path: str) -> None:
        """A 404 unless the model named in ``path`` (the ``/models/{name}`` routes) is the served one."""
        if route == "/v2/models/{name}/infer":
            check_name(path.split("/")[3], self.model)
        elif route != "/":
            check_name(path[len("/models/"):], self.model)

    def encode(self, status: int, answer: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The response headers and JSON body of ``answer`` sent with ``status`` (a 503 says when to retry)."""
        payload = json_bytes(answer)
        headers = [(b"retry-after", str(self.settings.retry_after_s).encode())] if status == 503 else []
        headers += [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        return headers, payload

    @staticmethod
    def internal_error(method: str, path: str, exc: BaseException | None = None) -> tuple[int, dict[str, str]]:
        """Log ``exc`` (default: the exception being handled) with its traceback; the 500 answer the
        client gets instead of its details."""
        log.error("error while answering %s %s", method, path, exc_info=exc if exc is not None else True)
        return 500, {"error": "internal error (logged by the server)"}

    def inline_image(self, body: bytes, content_type: str | None) -> Image.Image | TurboJpeg | None:
        """The raw image in ``body``, its header read, when it is small enough to decode on the event
        loop (``INLINE_DECODE_PIXELS``); None for anything else (JSON, a large image, no image)."""
        peeked = peek_raw_image(body, content_type)
        if peeked is None or peeked.width * peeked.height > INLINE_DECODE_PIXELS:
            return None
        return peeked

    def pixels_of(self, peeked: Image.Image | TurboJpeg) -> np.ndarray:
        """The preprocessed input of a raw image ``peek_raw_image`` returned (a 400 if it will not decode)."""
        preprocessing = self.model.preprocessing
        return preprocessing(decode_image(peeked, open_with=preprocessing.open))

    def scores_of(self, row: np.ndarray, top_k: int | None = None, function: str | None = None) -> list[dict[str, Any]]:
        """The answer for one image's logits: its labels and scores, highest first."""
        return ranked(row, self.model.labels, top_k, function or self.default_function)

    def submit(self, pixels: list[np.ndarray]) -> list[asyncio.Future]:
        """Queue ``pixels`` for the runner; a 503 when the server is not ready or its queue is full."""
        if not self.ready():
            raise RequestError(503, "not ready (loading, or shutting down)")
        try:
            return self.batcher.submit(pixels)
        except QueueFull as exc:
            raise RequestError(503, f"server busy: {exc}; retry later") from None

    def timeout_error(self) -> RequestError:
        """The 504 of a request whose result did not come within ``--timeout-s``."""
        return RequestError(504, f"no result within {self.settings.timeout_s:g} s (--timeout-s)")

    async def _classify(self, body: bytes, content_type: str | None) -> Any:
        peeked = self.inline_image(body, content_type)  # its header is read once, here
        if peeked is not None:  # one raw image, decoded on the loop: no parameters, one answer
            row, = await self._logits([self.pixels_of(peeked)])
            return self.scores_of(row)
        model = self.model

        def decode() -> tuple[Parsed, list[np.ndarray]]:  # one hop to the thread pool, not two
            parsed = parse_body(body, content_type, self.max_images, model.preprocessing.open)
            return parsed, [model.preprocessing(im) for im in parsed.images]

        parsed, pixels = await run_in_threadpool(decode)
        rows = await self._logits(pixels)
        answers = [self.scores_of(row, parsed.top_k, parsed.function) for row in rows]
        return answers if parsed.batched else answers[0]

    async def _v2_infer(self, body: bytes) -> dict[str, Any]:
        model = self.model

        def decode() -> tuple[dict[str, Any], list[np.ndarray]]:
            doc = _v2_request(body)
            return doc, _v2_pixels(doc["inputs"][0], model, self.pixel_shape, self.max_images)

        doc, pixels = await run_in_threadpool(decode)
        logits = np.stack(await self._logits(pixels)).astype(np.float32)
        out = {"model_name": model.name, "model_version": model.variant,
               "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape),
                            "data": logits.ravel().tolist()}]}
        if "id" in doc:
            out["id"] = doc["id"]
        return out

    async def _logits(self, pixels: list[np.ndarray]) -> list[np.ndarray]:
        """The logits of ``pixels`` through the batcher, within the request timeout (504 past it)."""
        futures = self.submit(pixels)
        # one timer that cancels what is not done, rather than asyncio.wait_for over a gather: a
        # task, a waiter and a timeout context for each request (7% of the server's Python time)
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            for f in futures:
                f.cancel()

        timer = asyncio.get_running_loop().call_later(self.settings.timeout_s, expire)
        try:
            return [await f for f in futures]
        except asyncio.CancelledError:
            for f in futures:  # the request was given up (timeout, or the client went): its images are skipped
                f.cancel()
            if expired:
                raise self.timeout_error() from None
            raise
        finally:
            timer.cancel()


def check_name(name: str, model: ServedModel) -> None:
    """A 404 unless ``name`` is the served model's."""
    if name != model.name:
        raise RequestError(404, f"unknown model {name!r}; this server serves {model.name!r}")


def _v2_request(body: bytes) -> dict[str, Any]:
    doc = load_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or len(doc["inputs"]) != 1 \
            or not isinstance(doc["inputs"][0], dict):
        raise RequestError(400, 'expected {"inputs": [one tensor: {"name", "shape", "datatype", "data"}]}')
    return doc


def _v2_pixels(tensor: dict[str, Any], model: ServedModel, want: list[int], max_images: int | None = None
               ) -> list[np.ndarray]:
    """An OIP input tensor -> preprocessed images: BYTES (base64 images) or FP32 pixel values."""
    datatype, data, shape = tensor.get("datatype"), tensor.get("data"), tensor.get("shape")
    if not isinstance(data, list) or not isinstance(shape, list):
        raise RequestError(400, "input tensor needs list fields shape and data")
    if datatype == "BYTES":
        flat = _flat_strings(data)
        if not flat:
            raise RequestError(400, "BYTES input has no data")
        check_count(len(flat), max_images, "BYTES data")
        return [model.preprocessing(decode_image(b64_bytes(v, f"data[{i}]"), f"data[{i}]", model.preprocessing.open))
                for i, v in enumerate(flat)]
    if datatype == "FP32":
        if len(shape) != 4 or shape[1:] != want or isinstance(shape[0], bool) or not isinstance(shape[0], int) \
                or shape[0] < 1:
            raise RequestError(400, f"FP32 input must have shape [N, {want[0]}, {want[1]}, {want[2]}] "
                                    f"(N >= 1; preprocessed pixel values, see /metadata), got {str(shape)[:80]}")
        check_count(shape[0], max_images, "FP32 data")
        try:
            array = np.asarray(data, dtype=np.float32).reshape(shape)
        except (ValueError, TypeError, OverflowError):  # ragged, not numbers, or an integer past float range
            raise RequestError(400, f"FP32 data is not {int(np.prod(shape))} numbers filling shape {shape}") from None
        if not np.isfinite(array).all():
            raise RequestError(400, "FP32 data has NaN or infinite values")
        return list(array)
    raise RequestError(400, f"unsupported datatype {short_repr(datatype)}: BYTES (base64 images) or FP32 (pixel values)")


def _flat_strings(data: list[Any], max_depth: int = 4) -> list[Any]:
    """BYTES data (strings, possibly nested in lists, as OIP allows) flattened in order; a 400 when
    the nesting goes deeper than a tensor of images would."""
    flat: list[Any] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list):
            if depth >= max_depth:
                raise RequestError(400, f"BYTES data is nested deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in reversed(value))
        else:
            flat.append(value)
    return flat
