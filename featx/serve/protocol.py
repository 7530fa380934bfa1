"""The HTTP parser the server listens with: uvicorn's httptools protocol, with
a limit on a request's head and featx's JSON error for what it cannot parse.

uvicorn's httptools protocol keeps a request line and headers of any size in
memory until they end (a client that sends a 200 MB header makes the server
hold 200 MB, and one that never stops, all of it), and answers a request it
cannot parse in plain text; nor does it close a connection that never ends
its headers (or sends nothing). Here a head over :data:`MAX_HEAD_BYTES` gets
431, one slower than :data:`HEAD_TIMEOUT_S` 408, and the answers are
``{"error": {"message", "type", "index"}}``. Without httptools, uvicorn's h11
parser keeps its own limit on size (16 KiB), but none on time.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from featx.serve.schemas import error_body

__all__ = ["MAX_HEAD_BYTES", "HEAD_TIMEOUT_S", "raw_error", "BoundedHttpToolsProtocol"]

#: The most bytes of request line and headers one request may send (nginx
#: allows 32 KiB, Node.js 16 KiB).
MAX_HEAD_BYTES = 64 * 1024
#: Seconds a connection may take to send a request's line and headers, from
#: its opening or the request's first byte (nginx's client_header_timeout is
#: 60 s; Node.js's headersTimeout, 60 s).
HEAD_TIMEOUT_S = 20.0


def raw_error(status: int, reason: str, kind: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer with featx's JSON error, closing the connection."""
    body = json.dumps(error_body(message, kind)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing heads over :data:`MAX_HEAD_BYTES`.

    The bytes of each data chunk that arrives while a head is incomplete are
    counted; a chunk in which a request also ended (pipelining) is not, so the
    count errs by at most one chunk, on the side of letting a head through.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = self.ended_here = False
        self.head_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.start_head_timer()  # a connection that never sends is closed too

    def connection_lost(self, exc) -> None:
        self.stop_head_timer()
        super().connection_lost(exc)

    def start_head_timer(self) -> None:
        self.stop_head_timer()
        self.head_timer = asyncio.get_running_loop().call_later(
            HEAD_TIMEOUT_S, self.head_timed_out
        )

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        """The headers did not come in time: 408 to a request that began,
        and the connection closed either way."""
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.in_head:
            self.transport.write(
                raw_error(
                    408, "Request Timeout", "request_timeout",
                    f"the request line and headers did not arrive within "
                    f"{HEAD_TIMEOUT_S:g} s",
                )
            )  # fmt: skip
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes = True, 0
        self.start_head_timer()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.ended_here = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        self.ended_here = False
        super().data_received(data)
        if not self.in_head or self.ended_here or self.transport.is_closing():
            return
        self.head_bytes += len(data)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.logger.warning("Request headers over %d bytes refused", MAX_HEAD_BYTES)
            self.transport.write(
                raw_error(
                    431, "Request Header Fields Too Large", "headers_too_large",
                    f"the request line and headers are over {MAX_HEAD_BYTES} bytes",
                )
            )  # fmt: skip
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(
            raw_error(400, "Bad Request", "invalid_http", "not a valid HTTP request")
        )
        self.transport.close()
