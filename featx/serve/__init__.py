"""``featx serve``: a layer's features, and a fitted model's predictions, over HTTP.

The stage runs the batch path's own code on requests: the weights, the
preprocessing and the decode settings of :mod:`featx.model` and
:mod:`featx.images`, the forward pass of :mod:`featx.compute.forward`, and for a model
file the loading and classifying of :mod:`featx.predict`. Its modules:

- :mod:`~featx.serve.spec`: :class:`ServeSpec`, what the command line asks for
  (no web library is imported by it);
- :mod:`~featx.serve.service`: the loaded network (and model), decoding one
  image's bytes and one batch's forward pass;
- :mod:`~featx.serve.decoding`: the pool that decodes off the event loop;
- :mod:`~featx.serve.batching`: the bounded queue that gathers requests into
  batches;
- :mod:`~featx.serve.schemas`: request and response shapes, and the JSON errors;
- :mod:`~featx.serve.reading`: a request's images, from JSON or form data;
- :mod:`~featx.serve.guard`: the middleware: metrics, the token, the body limit;
- :mod:`~featx.serve.metrics`: the Prometheus metrics;
- :mod:`~featx.serve.app`: the FastAPI application and its routes;
- :mod:`~featx.serve.protocol`: the HTTP parser, with a limit on a request's
  headers and JSON errors for what it cannot parse;
- :mod:`~featx.serve.server`: uvicorn, signals and the drain;
- :mod:`~featx.serve.ray_app`: the same application as a Ray Serve deployment.

FastAPI, uvicorn and prometheus-client (the ``serve`` extra) are imported only
by those modules, never by the rest of featx.
"""

from featx.serve.spec import ServeSpec, is_loopback

__all__ = ["ServeSpec", "is_loopback"]
