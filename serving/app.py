"""The HTTP app on uvicorn: Hugging Face Inference API routes, Open Inference Protocol v2 routes,
health, metadata and Prometheus metrics, over one validated variant.

Every request meets ``serving.admission`` first (body limits, the two bounded stages, metrics); it
hands the inference routes to ``serving.inference`` and everything else to a FastAPI app.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgeport.runtimes.machine import usable_cores
from edgeport.serving import connections
from edgeport.serving.admission import Admission
from edgeport.serving.batcher import Batcher
from edgeport.serving.direct import DirectInference
from edgeport.serving.inference import InferenceEndpoint, check_name
from edgeport.serving.metrics import Metrics
from edgeport.serving.payloads import RequestError
from edgeport.serving.selection import ServedModel
from edgeport.serving.settings import ServeSettings
from edgeport.validation import jpeg_turbo

CONFIG_ENV = "EDGEPORT_SERVE_CONFIG"  # how `edgeport serve --workers N` hands each worker its settings


QUEUE_WAIT_S = 2.0  # the wait a full queue stands for, by default
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


def create_app(settings: ServeSettings, model: ServedModel | None = None) -> Admission:
    """The ASGI app for ``settings`` (``model``: already selected, else selected from ``settings.model_dir``)."""
    from edgeport import __version__
    from edgeport.runtimes import runner_class
    from edgeport.serving.selection import select_variant

    model = model or select_variant(settings.model_dir, settings.variant)
    runner = runner_class(model.runtime)(model.path, threads=settings.threads)
    state: dict[str, Any] = {"ready": False}
    batcher = Batcher(runner.infer, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      max_queue=settings.max_queue, inline=usable_cores() == 1)
    metrics = Metrics(lambda: batcher.depth)
    batcher._on_batch = metrics.observe_batch
    endpoint = InferenceEndpoint(model, batcher, settings, ready=lambda: state["ready"])
    connections.configure(settings.connection_limits())

    def warm() -> None:
        runner.activate()
        jpeg_turbo.available()  # the JPEG path's one-time self-check, before the first request rather than in it

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(warm)
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

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        headers = {"Retry-After": str(settings.retry_after_s)} if exc.status == 503 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        status, answer = InferenceEndpoint.internal_error(request.method, request.url.path, exc)
        return JSONResponse(answer, status_code=status)

    @app.get("/health")
    async def health():
        return JSONResponse({"live": True, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/metadata")
    async def metadata():
        return {**model.metadata(__version__), "limits": settings.limits(), "jpeg_decoder": jpeg_turbo.decoder_name()}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=metrics.content_type)

    # -- Open Inference Protocol v2 (KServe, Triton clients) ------------------------------------
    pixel_shape = endpoint.pixel_shape

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
        check_name(name, model)
        return {"name": model.name, "versions": [model.variant], "platform": f"edgeport/{model.runtime}",
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                           {"name": "pixel_values", "datatype": "FP32", "shape": [-1, *pixel_shape]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, len(model.labels)]}],
                "parameters": {"labels": model.labels}}

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(name: str):
        check_name(name, model)
        return JSONResponse({"name": model.name, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    # reads inference bodies within their limits, bounds uploads and inference apart, counts every
    # request; the inference routes go to the endpoint, the rest to FastAPI
    admission = Admission(app, limits=settings.admission_limits(), metrics=metrics, inference=endpoint)
    # plain requests whose body came with their headers skip the ASGI machinery (serving.direct)
    connections.use_direct(DirectInference(admission, endpoint))
    return admission


def app_from_env() -> Admission:
    """The app for a uvicorn worker process (``edgeport serve --workers N``)."""
    return create_app(ServeSettings(**json.loads(os.environ[CONFIG_ENV])))


def settings_env(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))
