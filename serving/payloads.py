"""Request bodies -> images and parameters, and scores -> the Hugging Face response shape.

The shapes are those of Hugging Face's image-classification task: a raw image body, or JSON
``{"inputs": "<base64>" | ["<base64>", ...], "parameters": {"top_k": k, "function_to_apply":
"softmax" | "sigmoid" | "none"}}``; the answer is ``[{"label", "score"}]`` sorted by score (a
list of them for a list of inputs). Every problem is a ``RequestError`` with the HTTP status
and a message that names it, never a server path or a traceback.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from edgeport.validation.dataset import open_image, peek_image
from edgeport.validation.jpeg_turbo import TurboJpeg

FUNCTIONS = ("softmax", "sigmoid", "none")
PARAMETERS = {"top_k", "function_to_apply"}
DEFAULT_TOP_K = 5  # transformers' image-classification pipeline default
# bytes, or an image peek_raw_image read the header of -> RGB image (validation.dataset.open_image's contract)
Opener = Callable[[bytes | Image.Image | TurboJpeg], Image.Image]


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> tuple[int, dict[str, str]]:
        """The status and JSON body this refusal is answered with, on either path (``{"error": message}``)."""
        return self.status, {"error": self.message}


@dataclass
class Parsed:
    """A request's images (decoded, RGB), its parameters, and whether it asked with a list."""

    images: list[Image.Image]
    top_k: int | None
    function: str | None
    batched: bool


def decode_image(data: bytes | Image.Image | TurboJpeg, where: str = "body",
                 open_with: Opener = open_image) -> Image.Image:
    """Bytes (or an image ``peek_raw_image`` returned) -> an RGB image, or a 400 naming what is wrong
    (empty, not an image, truncated, bomb).

    ``open_with``: the served model's decoding (``Preprocessing.open``: its decode mode), so that
    the pixels are those validation judged."""
    if not data:
        raise RequestError(400, f"{where} is empty: send the image bytes")
    try:
        return open_with(data)
    except ValueError as exc:  # open_image's reasons: corrupt, truncated, unknown format, decompression bomb
        raise RequestError(400, f"{where}: {exc}") from None


def b64_bytes(value: Any, where: str) -> bytes:
    """A base64 string (or data URL) -> bytes, or a 400 naming ``where``."""
    if not isinstance(value, str):
        raise RequestError(400, f"{where} must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data URL: data:image/png;base64,....
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where} is not valid base64") from None


def load_json(body: bytes) -> Any:
    """A JSON body -> its document, or a 400 naming why the parser cannot take it.

    Python's parser raises RecursionError on a document nested deeper than the interpreter's
    recursion limit (about 1,000 levels) and ValueError on an integer of more than 4,300 digits;
    neither is a server fault."""
    try:
        return json.loads(body)
    except RecursionError:
        raise RequestError(400, "JSON body is nested too deep (the request shapes need at most 6 levels)") from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"body is not valid UTF-8 JSON ({str(exc)[:80]})") from None
    except ValueError as exc:
        raise RequestError(400, f"body is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})") from None


def check_count(count: int, max_images: int | None, where: str) -> None:
    """A 400 when a request holds more images than the server could ever run together."""
    if max_images is not None and count > max_images:
        raise RequestError(400, f"{where} holds {count} images; at most {max_images} per request "
                                "(the queue's size, --max-queue): split the request")


def parse_body(body: bytes, content_type: str | None, max_images: int | None = None,
               open_with: Opener = open_image) -> Parsed:
    """The images and parameters of a ``POST /`` body (raw image bytes or JSON), decoded by ``open_with``."""
    kind = _body_kind(body, content_type)
    if kind == "json":
        return _parse_json(body, max_images, open_with)
    if kind != "image":
        raise RequestError(415, f"unsupported Content-Type {kind!r}: send image/* or application/octet-stream "
                                "(raw image bytes) or application/json ({\"inputs\": \"<base64 image>\"})")
    return Parsed([decode_image(body, open_with=open_with)], None, None, batched=False)


def _body_kind(body: bytes, content_type: str | None) -> str:
    """"json", "image" (raw image bytes), or the media type named that is neither."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/json" or (not kind and body[:1] in (b"{", b"[")):
        return "json"
    if not kind or kind.startswith("image/") or kind == "application/octet-stream":
        return "image"
    return kind


def peek_raw_image(body: bytes, content_type: str | None) -> Image.Image | TurboJpeg | None:
    """The raw image in ``body`` with its header read and nothing decoded (its size known, for the
    server to choose where to decode it; ``decode_image`` then decodes this same object); None
    for a JSON body, another Content-Type, or bytes that are no usable image (their error comes
    from ``parse_body``)."""
    if _body_kind(body, content_type) != "image":
        return None
    try:
        return peek_image(body)
    except ValueError:
        return None


def _parse_json(body: bytes, max_images: int | None, open_with: Opener) -> Parsed:
    doc = load_json(body)
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise RequestError(400, 'JSON body must be an object with "inputs" (a base64 image or a list of them)')
    unknown = set(doc) - {"inputs", "parameters", "options"}
    if unknown:
        raise RequestError(400, f"unknown field(s) {short_repr(sorted(unknown))}: expected inputs, parameters")
    inputs = doc["inputs"]
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if not items:
        raise RequestError(400, "inputs is an empty list")
    check_count(len(items), max_images, "inputs")
    params = doc.get("parameters") or {}  # checked before any image is decoded: they cost nothing
    if not isinstance(params, dict):
        raise RequestError(400, "parameters must be an object")
    unknown = set(params) - PARAMETERS
    if unknown:
        raise RequestError(400, f"unknown parameter(s) {short_repr(sorted(unknown))}: supported are top_k, "
                                "function_to_apply")
    top_k = params.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise RequestError(400, f"top_k must be a positive integer, got {short_repr(top_k)}")
    function = params.get("function_to_apply")
    if function is not None and function not in FUNCTIONS:
        raise RequestError(400, f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {short_repr(function)}")
    images = [decode_image(b64_bytes(v, f"inputs[{i}]" if batched else "inputs"), f"inputs[{i}]" if batched else "inputs",
                           open_with) for i, v in enumerate(items)]
    return Parsed(images, top_k, function, batched)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a message never echoes a client's megabytes back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def scores(logits: np.ndarray, function: str) -> np.ndarray:
    """Logits (labels,) -> scores, as transformers' pipeline applies ``function_to_apply``."""
    logits = np.asarray(logits, dtype=np.float64)
    if function == "softmax":
        e = np.exp(logits - logits.max())
        return e / e.sum()
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def ranked(logits: np.ndarray, labels: list[str], top_k: int | None, function: str) -> list[dict[str, Any]]:
    """``[{"label", "score"}]``, highest first (ties in label order), at most ``top_k`` (default 5)
    entries."""
    k = min(top_k or DEFAULT_TOP_K, len(labels))
    if len(labels) <= SMALL_LABEL_COUNT:
        values = _scores_small(logits.tolist(), function)
        order = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:k]  # stable: ties keep label order
        return [{"label": labels[i], "score": values[i]} for i in order]
    array = scores(logits, function)
    order = np.argsort(-array, kind="stable")[:k]
    return [{"label": labels[i], "score": float(array[i])} for i in order]


# Up to this many labels ``ranked`` scores in plain Python floats: numpy's cost per call, not per
# value, was most of a two-label answer (gender-vit, one core: 7.4 us against 2.1 us in a loop;
# in the server, where the request path runs cache-cold, a tenth of the time outside decoding).
# Past it numpy's vectorised exp wins (1,000 ImageNet labels).
SMALL_LABEL_COUNT = 32


def _scores_small(values: list[float], function: str) -> list[float]:
    """``scores`` for a short list of float logits, in float64 as ``scores`` computes them (the
    last bit may differ: libm's exp against numpy's)."""
    if function == "softmax":
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        total = sum(exps)
        return [e / total for e in exps]
    if function == "sigmoid":
        return [1.0 / (1.0 + _exp(-v)) for v in values]
    return values


def _exp(x: float) -> float:
    """``math.exp`` with numpy's overflow: infinity, not OverflowError (a sigmoid of -1000 is 0.0)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
