"""Reading a request's images: JSON (base64 strings, data: URIs) or multipart
form data, each fault of the body its own JSON error (empty 400, malformed 400,
wrong content type 415, wrong shape 422, too many images 413), each image that
cannot be read an :class:`~featx.serve.schemas.ImageError` at its index."""

from __future__ import annotations

import json

from fastapi import Request
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from featx.errors import printable
from featx.serve.schemas import ImageError, ServeError, image_bytes
from featx.serve.spec import ServeSpec


def read_images(inputs, spec: ServeSpec) -> list:
    """Each input's bytes, or the :class:`ImageError` it raised; refuses a
    request without images or with more than ``--max-images``."""
    inputs = [inputs] if isinstance(inputs, str | bytes) else list(inputs)
    if not inputs:
        raise ServeError(422, "invalid_request", "`input` holds no image")
    if len(inputs) > spec.max_images:
        raise ServeError(
            413, "too_many_images",
            f"{len(inputs)} images in one request; --max-images is {spec.max_images}",
        )  # fmt: skip
    out = []
    for item in inputs:
        try:
            out.append(item if isinstance(item, bytes) else image_bytes(item))
        except ImageError as exc:
            out.append(exc)
    return out


def all_failed(results: list) -> None:
    """A request none of whose images could be read is one 422, at the first."""
    if results and all(isinstance(r, ImageError) for r in results):
        first = results[0]
        raise ServeError(422, first.kind, first.message, 0)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_json(request: Request, model):
    """The body as ``model``, or the error of its first fault."""
    if media_type(request) != "application/json":
        raise ServeError(
            415, "unsupported_media_type",
            f"send Content-Type: application/json; got {media_type(request) or 'none'}",
        )  # fmt: skip
    body = await request.body()
    if not body.strip():
        raise ServeError(400, "empty_body", "the request body is empty")
    try:
        data = json.loads(body)
    except ValueError as exc:  # also bad UTF-8
        raise ServeError(400, "invalid_json", f"malformed JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ServeError(422, "invalid_request", f"{where}: {first['msg']}") from None


async def read_form(request: Request, spec: ServeSpec):
    """Multipart form data: its ``file`` parts' bytes, their names, ``top_k``."""
    try:
        form = await request.form(
            max_files=spec.max_images + 1, max_fields=spec.max_images + 8
        )
    except HTTPException as exc:
        raise ServeError(400, "invalid_multipart", str(exc.detail)) from None
    parts = form.getlist("file")
    if not parts:
        raise ServeError(422, "invalid_request", "no `file` part in the form")
    if len(parts) > spec.max_images:
        raise ServeError(
            413, "too_many_images",
            f"{len(parts)} images in one request; --max-images is {spec.max_images}",
        )  # fmt: skip
    items, names = [], []
    for part in parts:
        if isinstance(part, str):
            items.append(ImageError("invalid_request", "a `file` part must be a file"))
            names.append(None)
            continue
        data = await part.read()
        items.append(data if data else ImageError("invalid_image", "empty file"))
        names.append(printable(part.filename) if part.filename else None)
    top_k = form.get("top_k", "1")
    if not (isinstance(top_k, str) and top_k.isdigit() and int(top_k) >= 1):
        raise ServeError(422, "invalid_request", "top_k must be an integer >= 1")
    return items, names, int(top_k)
