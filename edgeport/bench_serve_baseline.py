"""The server a user would write by hand, for `edgeport bench-serve` to compare against.

FastAPI + a transformers ``pipeline("image-classification")`` in PyTorch eager, answering one
request at a time (an ``async`` route that calls the pipeline blocks the event loop: the
common way such a server is written). It returns the same JSON as the hosted Inference API.
It is a benchmark baseline only, not a way to serve: no batching, no limits, no validation.

Run as ``python -m edgeport.bench_serve_baseline MODEL_SOURCE --port P --threads T``.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

os.environ.setdefault("USE_TF", "0")

# at module level: FastAPI reads the route's annotations by name from the module (postponed
# annotations), and a Request imported inside build_app would be taken for a query parameter
from fastapi import FastAPI, Request  # noqa: E402


def build_app(model_source: str, threads: int):
    """The hand-written app: FastAPI, one pipeline, one request at a time."""
    import torch
    from PIL import Image
    from transformers import pipeline

    torch.set_num_threads(threads)
    classifier = pipeline("image-classification", model=model_source, device="cpu")
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"live": True, "ready": True}

    @app.post("/")
    async def classify(request: Request):
        image = Image.open(io.BytesIO(await request.body())).convert("RGB")
        return classifier(image)

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_source", help="a local Hugging Face model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.model_source, args.threads), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
