"""Dynamic batching: requests' images wait in one bounded queue, and a single
task takes them in batches of up to ``max_batch_size``, or whatever arrived
within ``max_wait_ms`` of the first, for one forward pass each."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable

import numpy as np

__all__ = ["Overloaded", "Batcher"]


class Overloaded(Exception):
    """More images wait than the queue holds; try again after ``retry_after`` s."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"{waiting} images are waiting; the queue is full")
        self.retry_after = retry_after


class Batcher:
    """Gathers crops into batches for ``run_batch`` (a list of crops → a dict of
    ``(n, …)`` arrays), which runs on one thread of its own so that the event
    loop stays free while the network computes.

    ``on_batch(size)`` is told each batch's size (the metrics).
    """

    def __init__(
        self,
        run_batch: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self.waiting = 0
        #: Images accepted but still decoding: a batch waits for them (up to
        #: max_wait_ms), and leaves at once when there are none.
        self.incoming = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="featx-forward"
        )
        self.task: asyncio.Task | None = None
        self.batch_seconds = 0.1  # a first guess at Retry-After's scale

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    def check_room(self, count: int) -> None:
        """Refuse ``count`` more images when the queue cannot take them. The
        images still decoding count: when decoding is the slow part, they are
        the ones that pile up."""
        ahead = self.waiting + self.incoming
        if ahead + count > self.max_queue:
            batches = -(-(ahead + count) // self.max_batch_size)
            raise Overloaded(ahead, max(1, round(batches * self.batch_seconds)))

    def expect(self, count: int) -> None:
        """``count`` images are decoding and will be submitted (or dropped:
        ``expect(-count)``)."""
        self.incoming += count

    async def submit(self, crops: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each crop's ``{layer key: row}``, once its batch has run."""
        self.check_room(len(crops))
        loop = asyncio.get_running_loop()
        futures = []
        for crop in crops:
            future = loop.create_future()
            self.queue.put_nowait((crop, future))
            futures.append(future)
        self.waiting += len(crops)
        return list(await asyncio.gather(*futures))

    async def _take(self) -> list:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0 or self.incoming == 0:  # nothing else is on its way
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        self.waiting -= len(batch)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take()
            live = [(crop, f) for crop, f in batch if not f.done()]  # not timed out
            if not live:
                continue
            if self.on_batch is not None:
                self.on_batch(len(live))
            started = loop.time()
            try:
                values = await loop.run_in_executor(
                    self.executor, self.run_batch, [crop for crop, _ in live]
                )
            except Exception as exc:  # the batch's requests answer 500
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * (
                loop.time() - started
            )
            for i, (_, future) in enumerate(live):
                if not future.done():
                    future.set_result({k: v[i] for k, v in values.items()})
