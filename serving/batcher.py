"""Dynamic batching: requests' images queue and run through the runner in groups.

One task takes the first waiting image, then whatever else is queued, or arrives within
``max_wait_ms``, up to ``max_batch`` images, and runs them as one batch in a single inference
thread (the runner is not shared between threads). The default wait is 0: greedy batching,
where a batch is whatever queued while the previous one ran, so a lone request never waits
for company and batches grow with the load by themselves. Measured with `edgeport bench-serve`
on gender-vit (tflite-int8-dynamic, 2 cores, 4 s phases): at 1 client, 108 req/s with a 5 ms
wait against 271 req/s with none; at 4 clients, 242 against 362. The queue is bounded
(``max_queue`` images): a request that does not fit is refused at once (``QueueFull``: the
server answers 503 with Retry-After), so memory stays bounded under any load. Written here
because no library in the set does request batching for an arbitrary runner (Triton and
TorchServe are servers of their own, not pieces to embed).

With ``inline`` (a server process that has one core), a batch the last one's per-image time says
will take at most ``INLINE_BATCH_S`` runs on the event loop itself instead of the inference
thread: there the hand-over to the thread and back (two thread switches and the GIL's) cost a
lone client about a seventh of its throughput (gender-vit on one core, alternating pairs, medians:
484 -> 560 req/s at 1 client, 8 of 8 pairs faster; 636 -> 686 at 4; no change at 16, where
batches are larger). Longer batches go to the thread, so that the loop keeps answering health
checks and enforcing body deadlines while a slow model runs.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

INLINE_BATCH_S = 0.005  # the longest batch an inline batcher runs on the event loop (see above)


class QueueFull(Exception):
    """The request's images do not fit in the queue now."""


@dataclass
class _Item:
    pixels: np.ndarray  # (C, H, W) float32
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Groups images into batches for ``infer`` (NCHW float32 -> logits), bounded and observable."""

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], *, max_batch: int = 8, max_wait_ms: float = 0.0,
                 max_queue: int = 64, on_batch: Callable[[int, float, bool], None] | None = None,
                 inline: bool = False) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self._infer = infer
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self._on_batch = on_batch
        self.inline = inline
        self._per_image_s: float | None = None  # the last batch's time per image; None before one
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        # one thread: runners are not thread-safe, and the batch is what uses the cores
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeport-infer")

    @property
    def depth(self) -> int:
        """Images waiting now."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop (the server calls this after in-flight requests are done)."""
        if self._queue is not None:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    def submit(self, images: list[np.ndarray]) -> list[asyncio.Future]:
        """Queue ``images`` (each C, H, W) together, or raise QueueFull when they do not all fit."""
        assert self._queue is not None, "Batcher.start() first"
        if self.max_queue - self._queue.qsize() < len(images):
            raise QueueFull(f"{self._queue.qsize()} images queued, at most {self.max_queue}")
        loop = asyncio.get_running_loop()
        items = [_Item(x, loop.create_future()) for x in images]
        for item in items:
            self._queue.put_nowait(item)
        return [item.future for item in items]

    def runs_inline(self, images: int) -> bool:
        """Whether a batch of ``images`` would run on the event loop (``inline``, and the last batch's
        time per image says it takes at most INLINE_BATCH_S)."""
        return self.inline and self._per_image_s is not None and self._per_image_s * images <= INLINE_BATCH_S

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    batch.append(self._queue.get_nowait() if remaining <= 0
                                 else await asyncio.wait_for(self._queue.get(), remaining))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            live = [item for item in batch if not item.future.done()]  # a timed-out request's images are skipped
            try:
                if live:
                    # one image: a view of it, not np.stack's copy (3 us; batches of one are common at low load)
                    pixels = live[0].pixels[None] if len(live) == 1 else np.stack([i.pixels for i in live])
                    on_loop = self.runs_inline(len(live))
                    if on_loop:
                        logits, seconds = _timed(self._infer, pixels)
                    else:
                        logits, seconds = await loop.run_in_executor(self._thread, _timed, self._infer, pixels)
                    self._per_image_s = seconds / len(live)
                    if self._on_batch is not None:
                        self._on_batch(len(live), seconds, on_loop)
                    for item, row in zip(live, logits):
                        if not item.future.done():
                            item.future.set_result(row)
            except Exception as exc:  # the runner failed on this batch: its requests get the error, the loop goes on
                for item in live:
                    if not item.future.done():
                        item.future.set_exception(exc)
            finally:
                for _ in batch:
                    self._queue.task_done()


def _timed(infer: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """``infer(pixels)`` and the seconds it took, timed where it runs: for a batch in the inference
    thread, the hand-over and the wait for the event loop to resume are not the runner's time (on a
    busy machine they took longer than INLINE_BATCH_S, and kept a fast model's batches off the loop)."""
    start = time.perf_counter()
    logits = infer(pixels)
    return logits, time.perf_counter() - start
