"""Extraction on a Ray cluster (``featx extract --engine ray``).

Ray Data splits the pending rows into blocks and streams them through a pool of
actors; each actor holds one model and runs the same decoding, preprocessing and
layer capture as the local engine (:func:`featx.compute.forward.run_forward`). The
driver receives the results and writes the standard cache, batch by batch, so a
run stopped midway resumes from the rows already committed. Imported only when
Ray is asked for.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from featx.cache import weights_spec
from featx.compute.cluster import EngineError, connect, require_ray
from featx.compute.forward import ImageDataset, build_net, run_forward, views_in
from featx.errors import DataError, FeatxError, WeightsError
from featx.model import load_weights

__all__ = [
    "ray_output_to",
    "restart_note",
    "quiet_ray_data",
    "check_folder_visible",
    "ExtractActor",
    "RayBatches",
    "ray_batches",
]


def _writes_to_fd(stream, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # pytest's, CliRunner's streams
        return False


@contextlib.contextmanager
def ray_output_to(log: Path) -> Iterator[None]:
    """Ray's own output, off the terminal and appended to ``log``: what its C++
    core writes on file descriptor 2 (``core_worker.cc: ... Actor with class
    name ...`` when an actor is made or restarted), what its Python logging
    writes on the stream it was given at import, and the raylet's messages it
    prints on ``sys.stdout`` (a worker died, its task is retried). featx's own
    ``sys.stderr`` (the progress bars) keeps the terminal: it is pointed at a
    copy of the old descriptor, which stays open for whoever still holds it.
    The local cluster's processes, started meanwhile, keep writing to ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    old_out, old_err = sys.stdout, sys.stderr
    with log.open("ab") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        sys.stdout = open(  # noqa: SIM115 (closed below)
            sink.fileno(), "w", buffering=1, closefd=False, errors="replace"
        )
        if _writes_to_fd(old_err, 2):
            sys.stderr = os.fdopen(
                os.dup(saved),
                "w",
                buffering=1,
                encoding=old_err.encoding,
                errors=old_err.errors,
            )
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            sys.stdout.close()
            sys.stdout, sys.stderr = old_out, old_err
            os.dup2(saved, 2)
            os.close(saved)


def restart_note(restarted: int, log: Path | None) -> str:
    """The one line that says Ray replaced workers that died."""
    where = f" (Ray's messages: {log})" if log is not None else ""
    return (
        f"Ray restarted {restarted} worker(s) that died; the images they held were "
        f"retried{where}"
    )


def quiet_ray_data(ray) -> None:
    """featx draws its own progress bar; Ray Data's bars and logs would fight it."""
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def _check_visible(root: str, sample: str) -> str:
    """Run on a worker: can it read the image folder? Returns an error or ''."""
    host = socket.gethostname()
    if not Path(root).is_dir():
        return f"worker on {host} cannot see {root}"
    try:
        with Path(sample).open("rb") as f:
            f.read(1)
    except OSError as exc:
        return f"worker on {host} cannot read {sample}: {exc.strerror or exc}"
    return ""


def check_folder_visible(ray, root: Path, sample: Path) -> None:
    """Fail early, with one line, when a node cannot read the image folder."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    check = ray.remote(num_cpus=0)(_check_visible)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    refs = [
        check.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)
        ).remote(str(root), str(sample))
        for n in nodes
    ]
    problems = [p for p in ray.get(refs, timeout=120) if p]
    if problems:
        raise DataError(
            f"{problems[0]}: the image folder must be visible to every Ray worker at "
            "the same path (a shared file system or the same files on each node)"
        )


class ExtractActor:
    """One model per actor; called with blocks of ``{"row", "path"}`` rows."""

    # Eight parameters: what a remote actor needs to rebuild the driver's model
    # (``preprocess`` carries the mean image, the decode mode and the precision).
    def __init__(
        self, spec, seed, expected_sha256, wanted, threads, use_gpu, arch, preprocess
    ):
        torch.set_num_threads(threads)
        loaded = load_weights(spec, seed=seed, model=arch)
        if loaded.sha256 != expected_sha256:
            raise WeightsError(
                f"worker on {socket.gethostname()} loaded other weights than the "
                f"driver ({loaded.sha256[:16]}… instead of {expected_sha256[:16]}…)"
            )
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.wanted = wanted
        self.preprocess = preprocess
        self.net = build_net(loaded, wanted, self.device)
        self.views = views_in(wanted)
        import ray

        # True in the process Ray started again after the actor's first one died
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        rows = np.asarray(batch["row"], np.int64)
        # the local engine's per-image code: decode, crop, or the reason it failed
        items = ImageDataset(
            [Path(str(p)) for p in batch["path"]],
            rows.tolist(),
            self.preprocess,
            self.views,
        )
        # what the decoders said stays in the Ray worker's log
        _, images, errors, _ = zip(*(items[i] for i in range(len(items))), strict=True)
        ok = np.array([not e for e in errors])
        out = {
            "row": rows,
            "error": np.array(errors, dtype=object),
            # a restarted actor's process: its first block is the one retried
            "restarted": np.full(len(rows), self.worker if self.restarted else ""),
        }
        values = {}
        if ok.any():
            values = run_forward(
                net=self.net,
                preprocess=self.preprocess,
                images=torch.stack(images)[torch.from_numpy(ok)],
                layers=self.wanted,
                device=self.device,
                views=self.views,
            )
        for layer in self.wanted:
            full = np.zeros((len(rows), layer.dim), dtype=np.dtype(layer.dtype))
            if ok.any():
                full[ok] = values[layer.key]
            out[layer.key] = full
        return out


class RayBatches:
    """The Ray engine's stream of batches, which keeps Ray's output in its log
    file from the moment the pipeline is set up until the stream ends or is
    dropped (a stream never iterated ends with it too)."""

    def __init__(self, batches: Iterator, output: contextlib.ExitStack) -> None:
        self._batches = batches
        self._output = output

    def __iter__(self):
        try:
            yield from self._batches
        finally:
            self.close()

    def close(self) -> None:
        self._output.close()

    __del__ = close


def ray_batches(
    *,
    files,
    rows,
    wanted,
    loaded,
    batch_size,
    engine,
    preprocess,
    log: Path | None = None,
    on_note: Callable[[str], None] | None = None,
) -> RayBatches:
    """The Ray engine's stream of ``(rows, values, failures)``, like
    :func:`featx.compute.forward.compute_batches`; ``engine`` is a
    :class:`featx.extraction.RayEngine` (its address and number of actors);
    ``preprocess`` is the driver's, sent to every worker (with caffe-alexnet's
    mean image, if one is used, already read). Ray's own output goes to ``log``
    (:func:`ray_output_to`) while the stream runs; ``on_note(line)`` hears,
    once at its end, that Ray restarted workers that died."""
    require_ray()
    # imported before the log is set up, so that their logging handlers keep the
    # stream on file descriptor 2, which then leads to the log
    import ray.data  # noqa: F401

    output = contextlib.ExitStack()
    if log is not None:
        output.enter_context(ray_output_to(log))
    try:
        ds, ray = _pipeline(
            files=files,
            rows=rows,
            wanted=wanted,
            loaded=loaded,
            batch_size=batch_size,
            engine=engine,
            preprocess=preprocess,
        )
    except BaseException:
        output.close()
        raise
    return RayBatches(_results(ray, ds, wanted, log, on_note), output)


# Long: one Ray Data pipeline (actors, blocks, resources), configured in one place.
def _pipeline(*, files, rows, wanted, loaded, batch_size, engine, preprocess):
    """The Ray Data pipeline of the pending rows, and the ray module."""
    ray = connect(engine.address)
    quiet_ray_data(ray)
    check_folder_visible(
        ray, Path(os.path.commonpath([str(f) for f in files])), files[0]
    )
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    workers = engine.actors or (gpus if gpus else max(1, cpus // 2))
    spec, seed = weights_spec(loaded.weights_id, loaded.source)
    per_actor = {"num_gpus": 1} if gpus else {"num_cpus": 0.5}
    threads = 1 if gpus else max(1, cpus // workers)
    items = [{"row": int(r), "path": str(f)} for r, f in zip(rows, files, strict=True)]
    ds = ray.data.from_items(
        items, override_num_blocks=max(1, len(items) // batch_size)
    )
    ds = ds.map_batches(
        ExtractActor,
        fn_constructor_kwargs={
            "spec": spec,
            "seed": seed,
            "expected_sha256": loaded.sha256,
            "wanted": wanted,
            "threads": threads,
            "use_gpu": bool(gpus),
            "arch": loaded.arch,
            "preprocess": preprocess,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_format="numpy",
        # Ray Data restarts failed actors and retries their blocks by itself; an
        # image that cannot be decoded is a recorded row, never an exception.
        **per_actor,
    )
    return ds, ray


def _results(ray, ds, wanted, log, on_note) -> Iterator:
    """The pipeline's batches as ``(rows, values, failures)``; at the end, a
    note if Ray restarted actors that died (and retried their blocks)."""
    restarted: set[str] = set()
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            errors = [str(e) for e in batch["error"]]
            restarted.update(str(w) for w in batch["restarted"] if w)
            ok = np.array([not e for e in errors])
            idx = np.asarray(batch["row"], np.int64)
            failed = [(int(r), e) for r, e in zip(idx, errors, strict=True) if e]
            order = np.argsort(idx[ok])
            values = {w.key: np.asarray(batch[w.key])[ok][order] for w in wanted}
            yield idx[ok][order], values, failed
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, FeatxError):
            raise cause from exc
        raise EngineError(f"Ray extraction failed: {str(exc).splitlines()[0]}") from exc
    if restarted and on_note is not None:
        on_note(restart_note(len(restarted), log))
