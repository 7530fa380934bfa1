"""Reading a request's images: JSON (base64 strings, data: URIs) or multipart
form data, each fault of the body its own JSON error (empty 400, malformed 400,
wrong content type 415, wrong shape 422, too many images 413), each image that
cannot be read an :class:`~featx.serve.schemas.ImageError` at its index."""

from __future__ import annotations

import json
import re

from fastapi import Request
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from featx.errors import printable
from featx.serve.schemas import ImageError, ServeError, image_bytes
from featx.serve.spec import ServeSpec

__all__ = [
    "read_images",
    "too_many_images",
    "all_failed",
    "media_type",
    "read_json",
    "json_type",
    "invalid_request",
    "read_form",
]


def read_images(inputs, spec: ServeSpec) -> list:
    """Each input's bytes, or the :class:`ImageError` it raised; refuses a
    request without images or with more than ``--max-images``."""
    inputs = [inputs] if isinstance(inputs, str | bytes) else list(inputs)
    if not inputs:
        raise ServeError(422, "invalid_request", "`input` holds no image")
    if len(inputs) > spec.max_images:
        raise too_many_images(len(inputs), spec)
    out = []
    for item in inputs:
        try:
            out.append(item if isinstance(item, bytes) else image_bytes(item))
        except ImageError as exc:
            out.append(exc)
    return out


def too_many_images(count, spec: ServeSpec) -> ServeError:
    return ServeError(
        413, "too_many_images",
        f"{count} images in one request; --max-images is {spec.max_images}",
    )  # fmt: skip


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
    except RecursionError:  # [[[[…: json's parser recurses once per level
        raise ServeError(
            400, "invalid_json", "malformed JSON: nested too deeply"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors()[0]) from None


def json_type(value) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    kinds = {int: "a number", float: "a number", str: "a string", list: "an array"}
    return kinds.get(type(value), "an object")


def invalid_request(error: dict) -> ServeError:
    """The 422 of pydantic's first ``error``; an ``input`` that is not a list
    of strings is told so, at the index of the item that is not one."""
    loc = error["loc"]
    if loc and loc[0] == "input":
        if len(loc) >= 3 and isinstance(loc[2], int):
            return ServeError(
                422, "invalid_request",
                f"input[{loc[2]}] must be a string (a base64-encoded image or a "
                f"data: URI); got {json_type(error['input'])}",
                loc[2],
            )  # fmt: skip
        if error["type"] in ("list_type", "string_type"):
            return ServeError(
                422, "invalid_request",
                "`input` must be a list of base64-encoded images (or one such "
                f"string); got {json_type(error['input'])}",
            )  # fmt: skip
    where = ".".join(str(p) for p in loc) or "body"
    return ServeError(422, "invalid_request", f"{where}: {error['msg']}")


async def read_form(request: Request, spec: ServeSpec):
    """Multipart form data: its ``file`` parts' bytes, their names, ``top_k``."""
    try:
        form = await request.form(
            max_files=spec.max_images + 1, max_fields=spec.max_images + 8
        )
    except HTTPException as exc:
        if str(exc.detail).startswith("Too many files"):  # the parser's max_files
            raise too_many_images(f"more than {spec.max_images}", spec) from None
        raise ServeError(400, "invalid_multipart", str(exc.detail)) from None
    parts = form.getlist("file")
    if not parts:
        raise ServeError(422, "invalid_request", "no `file` part in the form")
    if len(parts) > spec.max_images:
        raise too_many_images(len(parts), spec)
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
    # ASCII digits only: "²".isdigit() is true, and int("²") raises
    if not isinstance(top_k, str) or not re.fullmatch("0*[1-9][0-9]*", top_k):
        raise ServeError(422, "invalid_request", "top_k must be an integer >= 1")
    return items, names, int(top_k)
