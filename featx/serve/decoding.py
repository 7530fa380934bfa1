"""Decoding off the event loop: a pool of worker processes (the extract design:
each decodes one image at a time and captures what the decoders say) or of
threads (PIL releases the GIL while it decodes and resizes; what the decoders
print reaches the server's stderr)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing

from featx.serve.service import Crop, decode_crop

__all__ = ["DecodePool"]

#: The preprocessing a worker process crops with, set once when it starts.
_WORKER: dict = {}


def _start_worker(preprocess, views) -> None:
    import torch

    torch.set_num_threads(1)  # one core per decode, as extraction's workers
    _WORKER.update(preprocess=preprocess, views=views)


def _decode_in_worker(data: bytes) -> Crop:
    return decode_crop(data, _WORKER["preprocess"], _WORKER["views"], quiet=True)


class DecodePool:
    """``workers`` decoders of ``kind`` (``process`` or ``thread``) for
    ``service``'s preprocessing."""

    def __init__(self, service, *, kind: str = "process", workers: int = 2) -> None:
        self.service, self.kind, self.workers = service, kind, workers
        if kind == "process":
            # forkserver: a clean process, never a fork of one that runs torch
            # threads and the event loop
            self.executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_start_worker,
                initargs=(service.preprocess, service.views),
            )
        else:
            self.executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="featx-decode"
            )

    def warm_up(self) -> None:
        """Start every worker now, not on the first request."""
        call = _decode_in_worker if self.kind == "process" else self._call
        list(self.executor.map(call, [b""] * self.workers))

    def _call(self, data: bytes) -> Crop:
        if self.kind == "process":
            return _decode_in_worker(data)
        return self.service.decode(data, quiet=False)

    async def decode(self, datas: list[bytes]) -> list[Crop]:
        """Each image's crop, or why it has none, in order."""
        loop = asyncio.get_running_loop()
        if self.kind == "process":
            jobs = [
                loop.run_in_executor(self.executor, _decode_in_worker, d) for d in datas
            ]
        else:
            jobs = [loop.run_in_executor(self.executor, self._call, d) for d in datas]
        return list(await asyncio.gather(*jobs))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
