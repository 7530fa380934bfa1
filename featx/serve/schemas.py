"""The shapes of requests and answers, and the one JSON error every refusal is:
``{"error": {"message": …, "type": …, "index": …}}``."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ServeError",
    "error_body",
    "ImageError",
    "EmbeddingsRequest",
    "PredictRequest",
    "Embedding",
    "ItemError",
    "EmbeddingsResponse",
    "Prediction",
    "PredictResponse",
    "ErrorBody",
    "ErrorResponse",
    "DATA_URI",
    "URL",
    "image_bytes",
    "openapi_body",
    "ERROR_RESPONSES",
]


class ServeError(Exception):
    """A refusal: its HTTP ``status``, a ``type`` a program can test, a
    ``message`` for people, and the ``index`` of the image it is about (None
    for the request as a whole)."""

    def __init__(
        self, status: int, kind: str, message: str, index: int | None = None,
        headers: dict | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.kind, self.message, self.index = status, kind, message, index
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.index)


def error_body(message: str, kind: str, index: int | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "index": index}}


class ImageError(Exception):
    """One image of a request that cannot be read; the others go on."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``, in the OpenAI embeddings shape."""

    model_config = ConfigDict(extra="allow")

    input: list[str] | str = Field(
        description="Images: each a base64-encoded image file or a "
        "data:image/...;base64, URI (never a URL: the server fetches nothing)."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float",
        description="float: lists of numbers; base64: each embedding's "
        "little-endian float32 bytes, base64-encoded (what the openai client asks "
        "for by default).",
    )
    model: str | None = Field(None, description="Ignored: the server serves one.")
    dimensions: int | None = Field(
        None,
        description="The layer's width, if given: the server does not shorten "
        "embeddings, and refuses another number.",
    )


class PredictRequest(BaseModel):
    """``POST /v1/predict`` as JSON (or multipart form data with ``file`` parts)."""

    model_config = ConfigDict(extra="forbid")

    input: list[str] | str = Field(
        description="Images: base64-encoded image files or data: URIs."
    )
    top_k: int = Field(1, ge=1, description="The K best classes of each image.")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class ItemError(BaseModel):
    index: int
    message: str
    type: str


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Embedding]
    usage: dict
    layer: str
    spatial: str
    weights: str
    weights_sha256: str
    pretrained: bool
    decode: str
    precision: str
    runtime: str = Field(
        "torch", description="What ran the network: torch, openvino or onnxruntime."
    )
    errors: list[ItemError] = Field(
        default_factory=list, description="The images that could not be read."
    )


class Prediction(BaseModel):
    index: int
    filename: str | None = None
    label: str | None
    scores: dict[str, float]
    score_kind: Literal["probability", "decision"] | None
    error: dict | None = None


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: dict


class ErrorBody(BaseModel):
    message: str
    type: str
    index: int | None


class ErrorResponse(BaseModel):
    error: ErrorBody


DATA_URI = re.compile(r"^data:([\w.+/-]*)((?:;[\w=.+-]+)*?);base64,", re.ASCII)
URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def image_bytes(text: str) -> bytes:
    """The bytes of one image sent as base64 or a ``data:`` URI.

    Raises
    ------
    ImageError
        A URL (never fetched), a data: URI that is not base64, or bad base64.
    """
    if not isinstance(text, str):
        raise ImageError("invalid_request", "each input must be a string")
    if URL.match(text):
        raise ImageError(
            "url_not_allowed",
            "URLs are not fetched: send the image file's bytes, base64-encoded",
        )
    if text.startswith("data:"):
        match = DATA_URI.match(text)
        if match is None:
            raise ImageError(
                "invalid_base64", "a data: URI must be data:image/...;base64,<data>"
            )
        text = text[match.end() :]
    if "\n" in text:  # base64 in lines of 76 (GNU base64, MIME encoders)
        text = "".join(text.split())
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError("invalid_base64", f"not valid base64: {exc}") from exc
    if not data:
        raise ImageError("invalid_image", "empty image (0 bytes)")
    return data


def openapi_body(*models: type[BaseModel], multipart: bool = False) -> dict:
    """The ``requestBody`` of a route that reads its own body (so that size,
    content type and JSON errors get featx's answers), for the OpenAPI schema."""
    content = {"application/json": {"schema": models[0].model_json_schema()}}
    if multipart:
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                    },
                    "top_k": {"type": "integer", "minimum": 1, "default": 1},
                },
                "required": ["file"],
            }
        }
    return {"requestBody": {"required": True, "content": content}}


#: The answers every route may give besides its own.
ERROR_RESPONSES = {
    status: {"model": ErrorResponse, "description": what}
    for status, what in {
        400: "Empty body, malformed JSON",
        401: "Missing or wrong bearer token",
        413: "Over --max-request-mb or --max-images",
        415: "Wrong content type",
        422: "A request of the wrong shape, or no image that could be read",
        503: "The queue is full (Retry-After says when to try again)",
        504: "Waited past --timeout",
    }.items()
}
