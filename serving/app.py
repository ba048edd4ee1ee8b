"""The HTTP app (FastAPI on uvicorn): Hugging Face Inference API routes, Open Inference Protocol
v2 routes, health, metadata and Prometheus metrics, over one validated variant.

Images go through the same decoding (``Preprocessing.open``, with the model's decode mode), preprocessing
(``validation.preprocess.Preprocessing``) and runner (``runtimes``) as validation, so the
scores served are the logits the harness judged. Requests are batched (``serving.batcher``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from dataclasses import asdict
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeport.serving import connections
from edgeport.serving.admission import Admission
from edgeport.serving.batcher import Batcher, QueueFull
from edgeport.serving.metrics import Metrics
from edgeport.serving.payloads import (RequestError, b64_bytes, check_count, decode_image, load_json, parse_body, ranked,
                              raw_image_pixels, short_repr)
from edgeport.serving.selection import ServedModel
from edgeport.serving.settings import ServeSettings

log = logging.getLogger("edgeport.serve")
CONFIG_ENV = "EDGEPORT_SERVE_CONFIG"  # how `edgeport serve --workers N` hands each worker its settings


QUEUE_WAIT_S = 2.0  # the wait a full queue stands for, by default
# A raw image up to this many pixels (by its header) is decoded and preprocessed on the event loop:
# handing it to the thread pool and back cost more than decoding it (gender-vit, 200x200 JPEGs, one
# core, 16 clients: 547 -> 581 req/s, docs/benchmarks.md 2026-12-06). Larger ones, JSON bodies and
# the v2 routes go to the thread pool, so that one big image never holds the loop for long (a
# 512x512 JPEG decodes in about 1 ms).
INLINE_DECODE_PIXELS = 512 * 512
MAX_DEFAULT_QUEUE = 64


def default_max_queue(p50_ms: float | None, max_batch: int, wait_s: float = QUEUE_WAIT_S) -> int:
    """How many requests may be in the server at once when --max-queue is not given: about
    ``wait_s`` of work at the variant's validated batch-1 latency, at least two batches, at most 64.

    A count that suits a 1 ms model is a long wait for a slow one: with 64 requests in progress
    a ViT-B/16 fp32 server on one core (4.3 req/s) answered its accepted requests after 14 s at
    p99 under twice its sustainable rate (bench-serve, 2026-12-04), where 2 s of work refused the
    rest with 503 at once. Without a validated latency: 64.
    """
    if not p50_ms or p50_ms <= 0:
        return MAX_DEFAULT_QUEUE
    return max(2 * max_batch, min(MAX_DEFAULT_QUEUE, math.ceil(wait_s * 1000.0 / p50_ms)))


def create_app(settings: ServeSettings, model: ServedModel | None = None) -> FastAPI:
    """The app for ``settings`` (``model``: already selected, else selected from ``settings.model_dir``)."""
    from edgeport import __version__
    from edgeport.runtimes import runner_class
    from edgeport.serving.selection import select_variant

    model = model or select_variant(settings.model_dir, settings.variant)
    runner = runner_class(model.runtime)(model.path, threads=settings.threads)
    state: dict[str, Any] = {"ready": False}
    batcher = Batcher(runner.infer, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      max_queue=settings.max_queue)
    metrics = Metrics(lambda: batcher.depth)
    batcher._on_batch = metrics.observe_batch
    default_function = "sigmoid" if model.multi_label or len(model.labels) == 1 else "softmax"
    max_images = settings.max_images_per_request
    connections.configure(settings.connection_limits())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(runner.activate)
        batcher.start()
        state["ready"] = True
        try:
            yield
        finally:  # uvicorn has stopped accepting and finished in-flight requests (SIGTERM drains)
            state["ready"] = False
            await batcher.stop()
            runner.deactivate()

    app = FastAPI(title=f"edgeport serve: {model.name}", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    # reads inference bodies within their limits, bounds uploads and inference apart, counts every request
    app.add_middleware(Admission, limits=settings.admission_limits(), metrics=metrics)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        headers = {"Retry-After": str(settings.retry_after_s)} if exc.status == 503 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("error while answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (logged by the server)"}, status_code=500)

    async def logits_of(pixels: list[np.ndarray]) -> list[np.ndarray]:
        if not state["ready"]:
            raise RequestError(503, "not ready (loading, or shutting down)")
        try:
            futures = batcher.submit(pixels)
        except QueueFull as exc:
            raise RequestError(503, f"server busy: {exc}; retry later") from None
        # one timer that cancels what is not done, rather than asyncio.wait_for over a gather: a
        # task, a waiter and a timeout context for each request (7% of the server's Python time)
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            for f in futures:
                f.cancel()

        timer = asyncio.get_running_loop().call_later(settings.timeout_s, expire)
        try:
            return [await f for f in futures]
        except asyncio.CancelledError:
            for f in futures:  # the request was given up (timeout, or the client went): its images are skipped
                f.cancel()
            if expired:
                raise RequestError(504, f"no result within {settings.timeout_s:g} s (--timeout-s)") from None
            raise
        finally:
            timer.cancel()

    def check_name(name: str) -> None:
        if name != model.name:
            raise RequestError(404, f"unknown model {name!r}; this server serves {model.name!r}")

    async def classify(request: Request) -> JSONResponse:
        body = await request.body()  # already read by serving.admission, within its limits
        content_type = request.headers.get("content-type")

        def decode() -> tuple[Any, list[np.ndarray]]:  # one hop to the thread pool, not two
            parsed = parse_body(body, content_type, max_images, model.preprocessing.open)
            return parsed, [model.preprocessing(im) for im in parsed.images]

        pixel_count = raw_image_pixels(body, content_type)
        if pixel_count is not None and pixel_count <= INLINE_DECODE_PIXELS:
            parsed, pixels = decode()
        else:
            parsed, pixels = await run_in_threadpool(decode)
        rows = await logits_of(pixels)
        function = parsed.function or default_function
        answers = [ranked(row, model.labels, parsed.top_k, function) for row in rows]
        return JSONResponse(answers if parsed.batched else answers[0])

    # The inference routes are Starlette's plain routes on the FastAPI app: FastAPI's dependency
    # solving (a sub-response, the query parameters) for a route that takes the request as it is
    # was a tenth of the server's Python time per request (py-spy, gender-vit, 16 clients).
    async def root(request: Request) -> JSONResponse:
        return await classify(request)

    async def by_name(request: Request) -> JSONResponse:
        check_name(request.path_params["name"])
        return await classify(request)

    app.add_route("/", root, methods=["POST"])
    app.add_route("/models/{name:path}", by_name, methods=["POST"])

    @app.get("/health")
    async def health():
        return JSONResponse({"live": True, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/metadata")
    async def metadata():
        return {**model.metadata(__version__), "limits": settings.limits()}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    # -- Open Inference Protocol v2 (KServe, Triton clients) ------------------------------------
    pixel_shape = [model.channels, model.preprocessing.height, model.preprocessing.width]

    @app.get("/v2")
    async def v2_server():
        return {"name": "edgeport", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def v2_ready():
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/v2/models/{name}")
    async def v2_metadata(name: str):
        check_name(name)
        return {"name": model.name, "versions": [model.variant], "platform": f"edgeport/{model.runtime}",
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                           {"name": "pixel_values", "datatype": "FP32", "shape": [-1, *pixel_shape]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, len(model.labels)]}],
                "parameters": {"labels": model.labels}}

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(name: str):
        check_name(name)
        return JSONResponse({"name": model.name, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    async def v2_infer(request: Request) -> JSONResponse:
        check_name(request.path_params["name"])
        body = await request.body()  # already read by serving.admission, within its limits

        def decode() -> tuple[dict[str, Any], list[np.ndarray]]:
            doc = _v2_request(body)
            return doc, _v2_pixels(doc["inputs"][0], model, pixel_shape, max_images)

        doc, pixels = await run_in_threadpool(decode)
        rows = await logits_of(pixels)
        logits = np.stack(rows).astype(np.float32)
        out = {"model_name": model.name, "model_version": model.variant,
               "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape),
                            "data": logits.ravel().tolist()}]}
        if "id" in doc:
            out["id"] = doc["id"]
        return JSONResponse(out)

    app.add_route("/v2/models/{name}/infer", v2_infer, methods=["POST"])
    return app


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


def app_from_env() -> FastAPI:
    """The app for a uvicorn worker process (``edgeport serve --workers N``)."""
    return create_app(ServeSettings(**json.loads(os.environ[CONFIG_ENV])))


def settings_env(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))
