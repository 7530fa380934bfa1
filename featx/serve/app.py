"""The FastAPI application: its routes, the state they share (the decode pool
and the batcher), and the answers they build.

Every request passes :class:`featx.serve.guard.Guard` first (metrics, the
token, the body limit). Routes read their own bodies
(:mod:`featx.serve.reading`) rather than letting FastAPI parse them, so that
each way a body can be wrong gets featx's one JSON error with its status.
"""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from featx import __version__
from featx.serve.batching import Batcher, Overloaded
from featx.serve.decoding import DecodePool
from featx.serve.guard import Guard
from featx.serve.metrics import Metrics
from featx.serve.reading import (
    all_failed,
    media_type,
    read_form,
    read_images,
    read_json,
)
from featx.serve.schemas import (
    ERROR_RESPONSES,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ImageError,
    PredictRequest,
    PredictResponse,
    ServeError,
    error_body,
    openapi_body,
)
from featx.serve.spec import ServeSpec

__all__ = [
    "json_response",
    "ServerState",
    "embeddings_answer",
    "predict_answer",
    "create_app",
]


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        json.dumps(data).encode(), status, headers, media_type="application/json"
    )


class ServerState:
    """What the routes share: the service, the decode pool, the batcher."""

    def __init__(
        self, service, spec: ServeSpec, metrics: Metrics, batcher=Batcher
    ) -> None:
        self.service, self.spec, self.metrics = service, spec, metrics
        self.batcher_class = batcher
        self.pool: DecodePool | None = None
        self.batcher: Batcher | None = None
        self.ready = False

    async def start(self) -> None:
        from featx.compute.forward import available_cores

        loop = asyncio.get_running_loop()
        spec = self.spec
        workers = spec.decode_workers or available_cores()
        self.pool = DecodePool(self.service, kind=spec.decode_pool, workers=workers)
        await loop.run_in_executor(None, self.pool.warm_up)
        self.batcher = self.batcher_class(
            self.service.forward,
            max_batch_size=spec.max_batch_size,
            max_wait_ms=spec.max_wait_ms,
            max_queue=spec.max_queue,
            on_batch=self.metrics.batch_size.observe,
        )
        await loop.run_in_executor(self.batcher.executor, self.service.warm_up)
        self.batcher.start()
        self.ready = True
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.stop()
        if self.pool is not None:
            self.pool.close()

    async def compute(self, items: list, endpoint: str) -> list:
        """Each item's ``{layer key: row}``, or its :class:`ImageError`; the
        items are bytes, or the ImageError their reading raised."""
        self.metrics.images.labels(endpoint).inc(len(items))
        try:
            return await asyncio.wait_for(self._compute(items), self.spec.timeout)
        except TimeoutError:
            raise ServeError(
                504, "timeout",
                f"no answer within --timeout {self.spec.timeout:g} s; the server is "
                "busy, try again",
            ) from None  # fmt: skip
        except Overloaded as exc:
            raise ServeError(
                503, "overloaded", f"{exc}; try again in {exc.retry_after} s",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None  # fmt: skip

    async def _compute(self, items: list) -> list:
        good = [i for i, item in enumerate(items) if isinstance(item, bytes)]
        self.batcher.check_room(len(good))  # before the work of decoding
        self.batcher.expect(len(good))
        try:
            crops = await self.pool.decode([items[i] for i in good])
        finally:
            self.batcher.expect(-len(good))
        out = list(items)
        ready = []
        for i, crop in zip(good, crops, strict=True):
            if crop.pixels is None:
                out[i] = ImageError("invalid_image", crop.error)
            else:
                ready.append((i, crop.pixels))
        rows = await self.batcher.submit([pixels for _, pixels in ready])
        for (i, _), row in zip(ready, rows, strict=True):
            out[i] = row
        for item in out:
            if isinstance(item, ImageError):
                self.metrics.decode_failures.labels(item.kind).inc()
        self.metrics.queue_depth.set(self.batcher.waiting)
        return out


def embeddings_answer(service, results: list, encoding: str) -> dict:
    data, errors = [], []
    for i, r in enumerate(results):
        if isinstance(r, ImageError):
            errors.append({"index": i, "message": r.message, "type": r.kind})
            continue
        row = service.embedding(r)
        if encoding == "base64":
            vector = base64.b64encode(row.astype("<f4").tobytes()).decode()
        else:
            vector = row.tolist()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    about = service.describe()
    n = len(results)
    return {
        "object": "list",
        "model": about["model"],
        "data": data,
        "usage": {"prompt_tokens": n, "total_tokens": n, "images": n},
        **{
            k: about[k]
            for k in (
                "layer",
                "spatial",
                "weights",
                "weights_sha256",
                "pretrained",
                "decode",
                "precision",
                "runtime",
                "dim",
            )
        },  # fmt: skip
        "errors": errors,
    }


def predict_answer(service, results, names, top_k: int) -> dict:
    rows = [i for i, r in enumerate(results) if not isinstance(r, ImageError)]
    values = {k: np.stack([results[i][k] for i in rows]) for k in results[rows[0]]}
    found = dict(zip(rows, service.predict(values, top_k), strict=True))
    out = []
    for i, r in enumerate(results):
        entry = {"index": i, "filename": names[i]}
        if isinstance(r, ImageError):
            entry.update(label=None, scores={}, score_kind=None,
                         error={"message": r.message, "type": r.kind})  # fmt: skip
        else:
            p = found[i]
            entry.update(label=p.label, scores=dict(p.top), score_kind=p.score_kind)
        out.append(entry)
    return {"predictions": out, "model": service.model_info()}


def create_app(service, spec: ServeSpec, *, batcher=Batcher) -> FastAPI:
    """The application serving ``service`` (a
    :class:`featx.serve.service.FeatureService`) with ``spec``'s limits;
    ``batcher`` gathers its batches (:class:`featx.serve.batching.Batcher`, or
    on Ray :class:`featx.serve.ray_app.ServeBatcher`)."""
    metrics = Metrics()
    state = ServerState(service, spec, metrics, batcher)

    @asynccontextmanager
    async def lifespan(app):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="featx serve",
        version=__version__,
        description=f"Features of {service.model_name} {service.layer}"
        + (" and a fitted classifier's predictions" if service.has_classifier else ""),
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.featx = state
    app.add_middleware(Guard, spec=spec, metrics=metrics)
    _error_handlers(app)
    _probes(app, state)
    _routes(app, state)
    return app


def _error_handlers(app: FastAPI) -> None:
    """Every error answers in the OpenAI error shape, in one line."""

    @app.exception_handler(ServeError)
    async def serve_error(request, exc: ServeError):
        return JSONResponse(exc.body(), exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "invalid_request"
        )
        return JSONResponse(
            error_body(str(exc.detail), kind), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal(request, exc: Exception):
        # the traceback goes to the server's log; the client gets one line
        return JSONResponse(
            error_body(f"internal error ({type(exc).__name__})", "internal_error"),
            500,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return JSONResponse(error_body(str(exc.errors()[:1]), "invalid_request"), 422)


def _probes(app: FastAPI, state: ServerState) -> None:
    """Liveness, readiness and Prometheus metrics."""
    service, metrics = state.service, state.metrics

    @app.get("/healthz", summary="Alive")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Weights loaded and a warm-up batch run")
    async def readyz():
        if not state.ready:
            return json_response({"status": "starting"}, 503)
        return {"status": "ready", **service.describe()}

    # HEAD too: uptime monitors and some load balancers probe with it
    for path, probe in (("/healthz", healthz), ("/readyz", readyz)):
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        if state.batcher is not None:
            metrics.queue_depth.set(state.batcher.waiting)
        return Response(metrics.render(), media_type=metrics.content_type)


def _routes(app: FastAPI, state: ServerState) -> None:
    """The two endpoints that compute: embeddings and predictions."""
    service, spec = state.service, state.spec

    @app.post(
        "/v1/embeddings",
        summary="Features of images, in the OpenAI embeddings shape",
        response_model=EmbeddingsResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=openapi_body(EmbeddingsRequest),
    )
    async def embeddings(request: Request):
        req = await read_json(request, EmbeddingsRequest)
        if req.dimensions is not None and req.dimensions != service.dim:
            raise ServeError(
                422, "invalid_request",
                f"dimensions: {service.layer}'s embeddings have {service.dim} "
                f"values, and featx does not shorten them; got {req.dimensions}",
            )  # fmt: skip
        results = await state.compute(read_images(req.input, spec), "/v1/embeddings")
        all_failed(results)
        return json_response(embeddings_answer(service, results, req.encoding_format))

    @app.post(
        "/v1/predict",
        summary="The fitted model's classes of images",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=openapi_body(PredictRequest, multipart=True),
    )
    async def predict(request: Request):
        if not service.has_classifier:
            raise ServeError(
                404, "no_classifier",
                "this server serves features only (started with --layer); "
                "/v1/predict needs featx serve --model-file",
            )  # fmt: skip
        if media_type(request) == "multipart/form-data":
            items, names, top_k = await read_form(request, spec)
        else:
            req = await read_json(request, PredictRequest)
            items = read_images(req.input, spec)
            names, top_k = [None] * len(items), req.top_k
        results = await state.compute(items, "/v1/predict")
        all_failed(results)
        # the classifier runs off the event loop, as the network does
        answer = await asyncio.to_thread(predict_answer, service, results, names, top_k)
        return json_response(answer)
