"""`edgeport serve`: a real server process on loopback, a real HTTP client."""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import shutil
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import requests

from conftest import REPO, metric_value, serving


def _faces(faces_dir: Path) -> list[Path]:
    return sorted(p for p in faces_dir.rglob("*.jpg"))


@pytest.fixture(scope="module")
def server(validated_tiny):
    """A server pinned to one core, so that it runs its short batches on its event loop (serving.batcher's
    inline mode); the other servers here have every core and run batches in the inference thread."""
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-wait-ms", "20",
                 cores={min(os.sched_getaffinity(0))}) as (url, _, _):
        yield url


@pytest.fixture(scope="module")
def harness_logits(validated_tiny, faces_dir):
    """What validation computes for faces_dir: the same decoding, preprocessing and runner."""
    from edgeport.runtimes import runner_class
    from edgeport.validation.dataset import load_eval_arrays, scan_eval_set
    from edgeport.validation.preprocess import Preprocessing

    pre = Preprocessing.from_file(validated_tiny / "preprocessor_config.json")
    eval_set = scan_eval_set(faces_dir, ["female", "male"])
    inputs, _, _ = load_eval_arrays(eval_set, pre, progress=False)
    with runner_class("onnxruntime")(validated_tiny / "model.onnx") as runner:
        logits = runner.infer(inputs)
    return {s.path.name: row for s, row in zip(eval_set.samples, logits)}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_served_scores_are_the_harness_logits(server, harness_logits, faces_dir):
    faces = _faces(faces_dir)
    for path in faces:
        r = requests.post(server, data=path.read_bytes(), headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert [a["label"] for a in answer] and sorted(a["label"] for a in answer) == ["female", "male"]
        assert answer[0]["score"] >= answer[1]["score"]
        expected = _softmax(harness_logits[path.name].astype(np.float64))
        got = {a["label"]: a["score"] for a in answer}
        np.testing.assert_allclose([got["female"], got["male"]], expected, atol=1e-6)
    # JSON: a list of base64 inputs -> a list of answers; raw logits with function_to_apply "none"; top_k
    body = {"inputs": [base64.b64encode(p.read_bytes()).decode() for p in faces[:3]],
            "parameters": {"function_to_apply": "none", "top_k": 1}}
    r = requests.post(f"{server}/models/tiny-vit", json=body, timeout=30)
    assert r.status_code == 200, r.text
    answers = r.json()
    assert len(answers) == 3 and all(len(a) == 1 for a in answers)
    for path, answer in zip(faces[:3], answers):
        logits = harness_logits[path.name]
        assert answer[0]["label"] == ["female", "male"][int(np.argmax(logits))]
        assert abs(answer[0]["score"] - float(logits.max())) < 1e-5
    # concurrent clients get the same scores, from batches this one-core server ran on its event loop
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: (p.name, requests.post(server, data=p.read_bytes(), timeout=30)), faces * 2))
    for name, r in answers:
        got = {a["label"]: a["score"] for a in r.json()}
        np.testing.assert_allclose([got["female"], got["male"]], _softmax(harness_logits[name].astype(np.float64)),
                                   atol=1e-6)
    assert metric_value(requests.get(f"{server}/metrics", timeout=5).text, "edgeport_batches_on_loop_total") > 0


@pytest.mark.parametrize("function", ["softmax", "sigmoid", "none"])
def test_ranked_scores_a_few_labels_in_python_as_numpy_does(function):
    """Up to SMALL_LABEL_COUNT labels the answer is scored in plain floats; it must rank and score
    as the numpy path (``scores``, a stable argsort) does, ties in label order, overflow included."""
    from edgeport.serving.payloads import SMALL_LABEL_COUNT, ranked, scores

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 8, 9, SMALL_LABEL_COUNT):
        labels = [f"label{i}" for i in range(n)]
        for trial in range(40):
            logits = (rng.standard_normal(n) * (1, 10, 1000)[trial % 3]).astype(np.float32)
            if n > 2 and trial % 4 == 0:
                logits[2] = logits[0]  # a tie
            if trial == 1:
                logits[0] = -1000.0  # sigmoid: exp(1000) overflows
            top_k = None if trial % 2 else n
            with np.errstate(over="ignore"):
                expected = scores(logits, function)
            order = np.argsort(-expected, kind="stable")[:min(top_k or 5, n)]
            got = ranked(logits, labels, top_k, function)
            assert [a["label"] for a in got] == [labels[i] for i in order]
            np.testing.assert_allclose([a["score"] for a in got], expected[order], rtol=1e-14, atol=0)
            assert all(type(a["score"]) is float for a in got)


def test_a_large_raw_image_is_decoded_off_the_loop_to_the_same_logits(server, validated_tiny, faces_dir):
    """Raw images up to INLINE_DECODE_PIXELS are decoded on the event loop, larger ones in the
    thread pool: both answer what validation's decoding, preprocessing and runner give."""
    import io

    from PIL import Image

    from edgeport.runtimes import runner_class
    from edgeport.serving.inference import INLINE_DECODE_PIXELS
    from edgeport.serving.payloads import peek_raw_image
    from edgeport.validation.dataset import open_image
    from edgeport.validation.preprocess import Preprocessing

    small = _faces(faces_dir)[0].read_bytes()
    buffer = io.BytesIO()
    side = int(INLINE_DECODE_PIXELS ** 0.5) + 40
    Image.open(io.BytesIO(small)).resize((side, side)).save(buffer, format="PNG")
    large = buffer.getvalue()
    small_image, large_image = peek_raw_image(small, "image/jpeg"), peek_raw_image(large, "image/png")
    assert small_image.width * small_image.height <= INLINE_DECODE_PIXELS < large_image.width * large_image.height
    pre = Preprocessing.from_file(validated_tiny / "preprocessor_config.json")
    with runner_class("onnxruntime")(validated_tiny / "model.onnx") as runner:
        expected = runner.infer(np.stack([pre(open_image(io.BytesIO(b))) for b in (small, large)]))
    for body, kind, logits in ((small, "image/jpeg", expected[0]), (large, "image/png", expected[1])):
        r = requests.post(server, data=body, headers={"Content-Type": kind}, timeout=30)
        assert r.status_code == 200, r.text
        got = {a["label"]: a["score"] for a in r.json()}
        np.testing.assert_allclose([got["female"], got["male"]], _softmax(logits.astype(np.float64)), atol=1e-6)


def test_peek_raw_image_reads_the_header_alone():
    import io

    from PIL import Image

    from edgeport.serving.payloads import RequestError, decode_image, peek_raw_image

    def pixels(body: bytes, content_type: str | None) -> int | None:
        peeked = peek_raw_image(body, content_type)
        return None if peeked is None else peeked.width * peeked.height

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    assert pixels(jpeg, "image/jpeg") == 600
    assert pixels(jpeg, None) == 600 and pixels(jpeg, "application/octet-stream") == 600
    assert pixels(_bomb_png(), "image/png") is None  # past PIL's bomb limit: parse_body refuses it
    assert pixels(b'{"inputs": "x"}', None) is None  # JSON, by its first byte
    assert pixels(jpeg, "application/json") is None and pixels(jpeg, "text/plain") is None
    assert pixels(b"not an image", "image/jpeg") is None and pixels(b"", "image/jpeg") is None
    # a header is all it reads: this PNG's pixel data could not be decoded into 2000 x 2000 pixels
    assert pixels(_bomb_png(2000, 2000), "image/png") == 4_000_000
    with pytest.raises(RequestError) as refused:
        decode_image(peek_raw_image(_bomb_png(2000, 2000), "image/png"))
    assert refused.value.status == 400 and "corrupt or truncated" in refused.value.message
    # the peeked object is what gets decoded: the same pixels as decoding the bytes
    assert np.array_equal(np.asarray(decode_image(peek_raw_image(jpeg, "image/jpeg"))), np.asarray(decode_image(jpeg)))


def test_health_metadata_and_metrics(server, validated_tiny):
    from edgeport.converters.checksums import artifact_sha256

    assert requests.get(f"{server}/health", timeout=5).json() == {"live": True, "ready": True}
    meta = requests.get(f"{server}/metadata", timeout=5).json()
    assert meta["variant"] == "onnx-fp32" and meta["runtime"] == "onnxruntime" and meta["labels"] == ["female", "male"]
    assert meta["artifact_sha256"] == artifact_sha256(validated_tiny / "model.onnx")
    assert meta["preprocessing"]["height"] == 32 and meta["edgeport_version"]
    assert meta["jpeg_decoder"].startswith("libjpeg-turbo")  # simplejpeg is in the lock
    text = requests.get(f"{server}/metrics", timeout=5).text
    assert 'edgeport_requests_total{route="/health",status="200"}' in text
    assert "edgeport_batch_size_bucket" in text and "edgeport_queue_depth" in text
    assert "edgeport_request_seconds_bucket" in text


def test_the_server_runs_the_jpeg_self_check_before_it_is_ready(validated_tiny):
    import asyncio

    from edgeport.serving.app import create_app
    from edgeport.serving.settings import ServeSettings
    from edgeport.validation import jpeg_turbo

    jpeg_turbo._agrees_with_pillow.cache_clear()
    app = create_app(ServeSettings(model_dir=str(validated_tiny), threads=1))
    assert jpeg_turbo._agrees_with_pillow.cache_info().currsize == 0

    async def checked_on_start() -> int:
        async with app.app.router.lifespan_context(app.app):
            return jpeg_turbo._agrees_with_pillow.cache_info().currsize

    assert asyncio.run(checked_on_start()) == 1


def test_an_unexpected_error_is_a_logged_500_without_its_details(validated_tiny, caplog):
    from edgeport.serving.app import create_app
    from edgeport.serving.settings import ServeSettings

    app = create_app(ServeSettings(model_dir=str(validated_tiny), threads=1)).app

    @app.get("/boom")
    async def boom():
        raise RuntimeError("secret detail")

    sent: list[dict] = []

    async def call() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/boom", "raw_path": b"/boom", "root_path": "", "query_string": b"",
                 "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        with pytest.raises(RuntimeError):  # Starlette answers, then re-raises for the server to log
            await app(scope, receive, send)

    with caplog.at_level("ERROR", logger="edgeport.serve"):
        asyncio.run(call())
    assert sent[0]["status"] == 500
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert json.loads(body) == {"error": "internal error (logged by the server)"}
    assert b"secret detail" not in body
    logged = [r for r in caplog.records if r.name == "edgeport.serve" and r.levelname == "ERROR"]
    assert [r.getMessage() for r in logged] == ["error while answering GET /boom"]
    assert logged[0].exc_info is not None and "secret detail" in str(logged[0].exc_info[1])


def _bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming width x height pixels (PIL refuses it as a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_bad_requests_get_a_json_4xx_and_the_server_keeps_serving(validated_tiny, faces_dir):
    good = _faces(faces_dir)[0].read_bytes()
    cases = [
        ("not an image", dict(data=b"hello, not an image", headers={"Content-Type": "image/jpeg"}), 400),
        ("truncated", dict(data=good[: len(good) // 3], headers={"Content-Type": "image/jpeg"}), 400),
        ("bomb", dict(data=_bomb_png(), headers={"Content-Type": "image/png"}), 400),
        ("empty", dict(data=b"", headers={"Content-Type": "image/jpeg"}), 400),
        ("content type", dict(data=b"x", headers={"Content-Type": "text/plain"}), 415),
        ("bad json", dict(data=b"{not json", headers={"Content-Type": "application/json"}), 400),
        ("bad base64", dict(json={"inputs": "%%%not base64%%%"}), 400),
        ("unknown parameter", dict(json={"inputs": base64.b64encode(good).decode(), "parameters": {"topk": 2}}), 400),
        ("bad top_k", dict(json={"inputs": base64.b64encode(good).decode(), "parameters": {"top_k": 0}}), 400),
        ("too large", dict(data=b"\xff" * 300_000, headers={"Content-Type": "image/jpeg"}), 413),
    ]
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-body-mb", "0.25") as (url, proc, _):
        for name, kwargs, status in cases:
            r = requests.post(url, timeout=30, **kwargs)
            assert r.status_code == status, (name, r.status_code, r.text)
            error = r.json()["error"]
            assert error and "Traceback" not in error and str(REPO) not in error and "/tmp" not in error, (name, error)
        r = requests.post(f"{url}/models/no-such-model", data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert r.status_code == 404 and "tiny-vit" in r.json()["error"]
        assert requests.get(f"{url}/no/such/route", timeout=5).status_code == 404
        # every good request is still answered, and the errors were counted
        r = requests.post(url, data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert r.status_code == 200 and len(r.json()) == 2
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert 'edgeport_requests_total{route="/",status="400"} 8.0' in metrics
        assert 'edgeport_requests_total{route="/",status="413"} 1.0' in metrics
        assert proc.poll() is None


def test_open_inference_protocol_v2(server, harness_logits, faces_dir, validated_tiny):
    from edgeport.validation.dataset import open_image
    from edgeport.validation.preprocess import Preprocessing

    assert requests.get(f"{server}/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(f"{server}/v2/models/tiny-vit/ready", timeout=5).json()["ready"] is True
    meta = requests.get(f"{server}/v2/models/tiny-vit", timeout=5).json()
    assert meta["outputs"][0]["shape"] == [-1, 2] and meta["inputs"][1]["shape"] == [-1, 3, 32, 32]
    faces = _faces(faces_dir)[:2]
    request = {"id": "r1", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                       "data": [base64.b64encode(p.read_bytes()).decode() for p in faces]}]}
    r = requests.post(f"{server}/v2/models/tiny-vit/infer", json=request, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "r1" and out["model_version"] == "onnx-fp32" and out["outputs"][0]["shape"] == [2, 2]
    logits = np.asarray(out["outputs"][0]["data"], dtype=np.float32).reshape(2, 2)
    np.testing.assert_allclose(logits, np.stack([harness_logits[p.name] for p in faces]), atol=1e-5)
    # preprocessed pixel values in: the same logits
    pre = Preprocessing.from_file(validated_tiny / "preprocessor_config.json")
    pixels = np.stack([pre(open_image(p)) for p in faces])
    request = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": list(pixels.shape),
                           "data": pixels.ravel().tolist()}]}
    r = requests.post(f"{server}/v2/models/tiny-vit/infer", json=request, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json()["outputs"][0]["data"]).reshape(2, 2), logits, atol=1e-5)
    bad = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 8, 8], "data": [0.0] * 192}]}
    r = requests.post(f"{server}/v2/models/tiny-vit/infer", json=bad, timeout=30)
    assert r.status_code == 400 and "[N, 3, 32, 32]" in r.json()["error"]


def test_inference_routes_answer_post_only_and_name_their_model(server, faces_dir):
    """The inference routes are answered by serving.inference, not FastAPI's router: another method
    still gets 405 with Allow, another model's name 404, both as JSON errors, and both are counted."""
    from edgeport.serving.connections import json_bytes

    for path in ("/", "/models/tiny-vit", "/v2/models/tiny-vit/infer"):
        r = requests.get(f"{server}{path}", timeout=5)
        assert r.status_code == 405 and r.headers["Allow"] == "POST" and "POST" in r.json()["error"], path
    good = _faces(faces_dir)[0].read_bytes()
    r = requests.post(f"{server}/models/other", data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)
    assert r.status_code == 404 and "'other'" in r.json()["error"] and "'tiny-vit'" in r.json()["error"]
    # every error body written alike (compact JSON, as FastAPI's routes write theirs): the admission
    # stage's 405 above, the endpoint's 404, FastAPI's own 404
    unknown = requests.get(f"{server}/nowhere", timeout=5)
    for answer in (r, requests.get(f"{server}/", timeout=5), unknown):
        assert answer.content == json_bytes(answer.json()) and b'": "' not in answer.content, answer.content
    r = requests.post(f"{server}/v2/models/other/infer", json={"inputs": []}, timeout=30)
    assert r.status_code == 404 and "'other'" in r.json()["error"]
    metrics = requests.get(f"{server}/metrics", timeout=5).text
    assert 'edgeport_requests_total{route="/",status="405"}' in metrics
    assert 'edgeport_requests_total{route="/v2/models/{name}/infer",status="404"}' in metrics


def test_a_request_that_waits_too_long_gets_504(validated_tiny, faces_dir):
    good = _faces(faces_dir)[0].read_bytes()
    # the batcher holds a first image up to 2 s for others; the request may wait 0.2 s
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-wait-ms", "2000", "--timeout-s", "0.2") as (url, _, _):
        r = requests.post(url, data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)
        assert r.status_code == 504 and "--timeout-s" in r.json()["error"]


def test_sigterm_finishes_in_flight_requests(validated_tiny, faces_dir):
    good = _faces(faces_dir)[0].read_bytes()
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-wait-ms", "1500") as (url, proc, _):
        result: dict = {}

        def ask() -> None:
            result["response"] = requests.post(url, data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)

        client = threading.Thread(target=ask)
        client.start()
        time.sleep(0.5)  # the request now waits in the batcher
        proc.send_signal(signal.SIGTERM)
        client.join(30)
        assert result["response"].status_code == 200 and len(result["response"].json()) == 2
        # uvicorn re-raises the signal once drained, so the exit status says SIGTERM
        assert proc.wait(30) in (0, -signal.SIGTERM)


def test_the_queue_is_bounded():
    """Beyond max_queue waiting images the batcher refuses at once (the server's 503), and runs the rest."""
    from edgeport.serving.batcher import Batcher, QueueFull

    release = threading.Event()
    seen: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        release.wait(10)
        seen.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :2]

    async def scenario() -> None:
        batcher = Batcher(infer, max_batch=2, max_wait_ms=0, max_queue=3)
        batcher.start()
        first = batcher.submit([np.ones((1, 2, 2), np.float32)])
        await asyncio.sleep(0.05)  # taken: the runner is now busy with it
        waiting = batcher.submit([np.full((1, 2, 2), i, np.float32) for i in range(3)])
        assert batcher.depth == 3
        with pytest.raises(QueueFull):
            batcher.submit([np.zeros((1, 2, 2), np.float32)])
        release.set()
        results = await asyncio.gather(*first, *waiting)
        assert [float(r[0]) for r in results] == [1.0, 0.0, 1.0, 2.0]
        await batcher.stop()

    asyncio.run(scenario())
    assert seen == [1, 2, 1]  # grouped up to max_batch


def test_an_inline_batcher_runs_short_batches_on_the_loop_and_long_ones_in_its_thread():
    """With inline (a one-core server) a batch the last one's time per image puts within
    INLINE_BATCH_S runs on the event loop's thread; the first batch, a batch past the bound, and
    every batch without inline run in the inference thread; results are the same either way."""
    from edgeport.serving.batcher import INLINE_BATCH_S, Batcher

    delay = {"s": 0.0}
    threads: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.get_ident())
        time.sleep(delay["s"])
        return batch.reshape(len(batch), -1)[:, :2] * 2

    async def run(batcher: Batcher, value: float, images: int = 1) -> None:
        futures = batcher.submit([np.full((1, 2, 2), value, np.float32)] * images)
        assert [float(r[0]) for r in await asyncio.gather(*futures)] == [2 * value] * images

    async def scenario(inline: bool) -> list[bool]:
        batcher = Batcher(infer, max_batch=8, inline=inline)
        batcher.start()
        loop_thread, on_loop = threading.get_ident(), []
        for value, seconds in ((1.0, 0.0), (2.0, 0.0), (3.0, 2 * INLINE_BATCH_S), (4.0, 0.0), (5.0, 0.0)):
            delay["s"] = seconds
            threads.clear()
            await run(batcher, value)
            on_loop.append(threads == [loop_thread])
        assert batcher.runs_inline(1) is inline and not batcher.runs_inline(int(2 * INLINE_BATCH_S / 1e-6))
        await batcher.stop()
        return on_loop

    # first: no time known yet; third: slow (2x the bound), so the fourth goes to the thread too
    assert asyncio.run(scenario(inline=True)) == [False, True, True, False, True]
    assert asyncio.run(scenario(inline=False)) == [False] * 5


def test_a_batch_is_timed_where_it_runs_not_while_the_loop_is_busy():
    """A batch in the inference thread is timed in the thread: the event loop resuming late (held
    by other requests, or a busy machine) is not the runner's time, and must not keep a fast
    model's next batches off the loop."""
    from edgeport.serving.batcher import INLINE_BATCH_S, Batcher

    threads: list[int] = []
    seconds: list[float] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.get_ident())
        return batch.reshape(len(batch), -1)[:, :2]

    async def scenario() -> bool:
        batcher = Batcher(infer, max_batch=8, inline=True, on_batch=lambda n, s, on_loop: seconds.append(s))
        batcher.start()
        first = batcher.submit([np.zeros((1, 2, 2), np.float32)])
        # runs after the batcher hands the first batch to its thread: the loop is held for twice
        # the inline bound while the (instant) runner finishes
        asyncio.get_running_loop().call_soon(time.sleep, 2 * INLINE_BATCH_S)
        await asyncio.gather(*first)
        threads.clear()
        await asyncio.gather(*batcher.submit([np.zeros((1, 2, 2), np.float32)]))
        await batcher.stop()
        return threads == [threading.get_ident()]

    assert asyncio.run(scenario()), "the second batch went to the thread: the loop's pause was timed"
    assert seconds[0] < INLINE_BATCH_S


def test_serve_refuses_failed_or_changed_variants(validated_tiny, tmp_path, capsys):
    from edgeport.cli import main
    from edgeport.serving.selection import ServeError, select_variant

    model = select_variant(validated_tiny)  # the fastest passing one, by the report's p50
    report = json.loads((validated_tiny / "report.json").read_text())
    passing = [v for v in report["variants"] if v["status"] == "passed" and v["runtime"] != "coreml"]
    assert model.variant == min(passing, key=lambda v: v["latency_ms"]["p50"])["name"]
    assert "fastest" in model.notes[0]

    copy = tmp_path / "tiny-vit"
    shutil.copytree(validated_tiny, copy)
    report["variants"] = [dict(v, status="failed", passed=False) if v["name"] == "onnx-fp16" else v
                          for v in report["variants"]]
    (copy / "report.json").write_text(json.dumps(report))
    with pytest.raises(ServeError, match="onnx-fp16 did not pass validation"):
        select_variant(copy, "onnx-fp16")
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")
    assert main(["serve", str(copy), "--variant", "onnx-fp32"]) == 2
    assert "sha256 no longer matches manifest.json" in capsys.readouterr().err
    (copy / "report.json").unlink()
    with pytest.raises(ServeError, match="edgeport validate"):
        select_variant(copy)


def test_requests_beyond_the_bound_get_503_before_their_body_is_read(validated_tiny, faces_dir):
    """--max-queue bounds the requests in the server (reading, decoding, queued, running): the
    others are refused at once with Retry-After, and the admitted ones are still answered."""
    good = _faces(faces_dir)[0].read_bytes()
    # the batcher holds a first image 1.5 s for company: two requests fill the bound meanwhile
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-queue", "2", "--max-wait-ms", "1500") as (url, proc, _):
        results: list = [None] * 4

        def ask(i: int) -> None:
            start = time.perf_counter()
            r = requests.post(url, data=good, headers={"Content-Type": "image/jpeg"}, timeout=30)
            results[i] = (r, time.perf_counter() - start)

        clients = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for c in clients:
            c.start()
        time.sleep(0.5)  # both admitted, waiting in the batcher
        late = [threading.Thread(target=ask, args=(i,)) for i in (2, 3)]
        for c in late:
            c.start()
        for c in clients + late:
            c.join(30)
        refused = [results[i] for i in (2, 3)]
        assert all(r.status_code == 503 and r.headers["Retry-After"] and "--max-queue" in r.json()["error"]
                   for r, _ in refused), [r.text for r, _ in refused]
        assert all(seconds < 1.0 for _, seconds in refused)  # refused at once, not after the batch
        assert all(results[i][0].status_code == 200 for i in (0, 1))
        assert requests.post(url, data=good, headers={"Content-Type": "image/jpeg"}, timeout=30).status_code == 200
        assert proc.poll() is None


def test_only_inference_requests_count_against_the_bound():
    from edgeport.serving.admission import inference_route

    assert inference_route("POST", "/") == "/"
    assert inference_route("POST", "/models/org/name") == "/models/{name:path}"
    assert inference_route("POST", "/v2/models/tiny-vit/infer") == "/v2/models/{name}/infer"
    # health, metadata and metrics stay answerable however busy the server is
    assert inference_route("GET", "/health") is None and inference_route("GET", "/") is None
    assert inference_route("POST", "/v2/models/tiny-vit") is None and inference_route("POST", "/metrics") is None


def test_the_default_queue_bound_follows_the_validated_latency(validated_tiny, faces_dir):
    from edgeport.serving.app import default_max_queue

    assert default_max_queue(None, 8) == 64  # no validated latency: the fixed bound
    assert default_max_queue(1.0, 8) == 64  # a fast model: capped
    assert default_max_queue(115.0, 8) == 18  # ViT-B/16 fp32 on 2 cores: about 2 s of work
    assert default_max_queue(600.0, 8) == 16  # never under two batches
    with serving(validated_tiny, "--variant", "onnx-fp32") as (url, _, _):
        limits = requests.get(f"{url}/metadata", timeout=5).json()["limits"]
        report = json.loads((validated_tiny / "report.json").read_text())
        p50 = next(v for v in report["variants"] if v["name"] == "onnx-fp32")["latency_ms"]["p50"]
        assert limits["max_queue"] == default_max_queue(p50, 8) and limits["max_batch"] == 8
    with serving(validated_tiny, "--variant", "onnx-fp32", "--max-queue", "5") as (url, _, _):
        assert requests.get(f"{url}/metadata", timeout=5).json()["limits"]["max_queue"] == 5
