"""The middleware every request passes first: it counts and times the request
for the metrics, asks for the bearer token, and refuses bodies over the limit."""

from __future__ import annotations

import asyncio
import hmac
import time

from fastapi.responses import JSONResponse

from featx.serve.metrics import Metrics
from featx.serve.schemas import ServeError, error_body
from featx.serve.spec import ServeSpec

__all__ = ["ENDPOINTS", "OPEN_PATHS", "Guard"]

#: The paths metrics are labelled with; any other is ``other``.
ENDPOINTS = (
    "/v1/embeddings", "/v1/predict", "/healthz", "/readyz", "/metrics",
    "/openapi.json", "/docs",
)  # fmt: skip
#: The one path open without the token: a load balancer's liveness probe.
OPEN_PATHS = ("/healthz",)


class Guard:
    """Pure ASGI middleware, outermost: counts and times each request, asks
    for the bearer token, and refuses bodies over the limit."""

    def __init__(self, app, *, spec: ServeSpec, metrics: Metrics) -> None:
        self.app, self.spec, self.metrics = app, spec, metrics
        self.token = spec.token.encode() if spec.token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, self.limited(receive), sending)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def refusal(self, scope):
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            given = [v for k, v in scope["headers"] if k == b"authorization"]
            # two headers: a proxy in front may check one and featx the other
            scheme, _, value = (given[0] if len(given) == 1 else b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(
                value.strip(), self.token
            ):
                return JSONResponse(
                    error_body("a valid `Authorization: Bearer <token>` is required",
                               "unauthorized"),
                    401, headers={"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
        coding = headers.get(b"content-encoding", b"identity").strip().lower()
        if coding not in (b"", b"identity"):
            return JSONResponse(
                error_body(
                    f"Content-Encoding {coding.decode('latin-1')} is not accepted: "
                    "send the body uncompressed", "unsupported_media_type",
                ),
                415, headers={"Accept-Encoding": "identity"},
            )  # fmt: skip
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.spec.max_request_bytes:
            return JSONResponse(self.too_large().body(), 413)
        return None

    def too_large(self) -> ServeError:
        return ServeError(
            413, "request_too_large",
            f"the request body is over --max-request-mb {self.spec.max_request_mb:g}",
        )  # fmt: skip

    def limited(self, receive):
        """``receive`` that refuses a body (chunked, say) past the limit, and
        one that has not arrived within ``--timeout`` (a client that announces
        a body and stops would hold its connection for ever)."""
        total, whole = 0, False
        deadline = time.monotonic() + self.spec.timeout

        async def receiving():
            nonlocal total, whole
            if whole:  # after the body: a disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(
                    receive(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise ServeError(
                    408, "request_timeout",
                    f"the request body did not arrive within --timeout "
                    f"{self.spec.timeout:g} s",
                ) from None  # fmt: skip
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.spec.max_request_bytes:
                    raise self.too_large()
                whole = not message.get("more_body", False)
            return message

        return receiving
