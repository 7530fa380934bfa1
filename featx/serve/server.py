"""Running the application on uvicorn: the drain on SIGTERM and SIGINT.

uvicorn already stops taking connections on either signal and waits for the
requests in flight; after that it raises the signal again, which would end
the process with 130 or -15. A server told to stop that stopped cleanly
exits 0 here instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import uvicorn

from featx.serve.app import create_app
from featx.serve.spec import ServeSpec

__all__ = ["DrainingServer", "http_protocol", "make_server", "serve"]


class DrainingServer(uvicorn.Server):
    """uvicorn's server, which drains on SIGTERM/SIGINT and returns."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # a server in a thread (the tests) is stopped by should_exit
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def http_protocol():
    """The HTTP parser: httptools with featx's limit on a request's head
    (:mod:`featx.serve.protocol`), or, without httptools, uvicorn's h11 and
    its own limit."""
    try:
        from featx.serve.protocol import BoundedHttpToolsProtocol
    except ImportError:
        return "auto"
    return BoundedHttpToolsProtocol


def make_server(service, spec: ServeSpec, *, log_level: str = "info") -> DrainingServer:
    """The uvicorn server of ``service`` on ``spec``'s host and port."""
    config = uvicorn.Config(
        create_app(service, spec),
        host=spec.host,
        port=spec.port,
        http=http_protocol(),
        log_level=log_level,
        # requests in flight get their whole --timeout, then the drain ends
        timeout_graceful_shutdown=int(spec.timeout) + 5,
        limit_concurrency=None,
        server_header=False,
    )
    return DrainingServer(config)


def serve(service, spec: ServeSpec, *, log_level: str = "info") -> None:
    """Serve until SIGTERM or SIGINT; return once the requests in flight are
    answered."""
    make_server(service, spec, log_level=log_level).run()
