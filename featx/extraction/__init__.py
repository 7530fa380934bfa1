"""Extraction: image folder → AlexNet activations → HDF5 cache, resumably.

One run: list the images, hash the new or changed ones (:func:`scan_rows`),
bring the cache's structure in line with them (:func:`reconcile_cache`), then
compute every pending row with the compute core (:mod:`featx.compute.forward`, or the
Ray engine), writing batches from a background thread, and finally move images
that could not be decoded into ``/failed``.
"""

from featx.extraction.api import extract
from featx.extraction.records import Compute, ExtractResult, RayEngine
from featx.extraction.run import fill_rows

__all__ = ["Compute", "ExtractResult", "RayEngine", "extract", "fill_rows"]
