"""The compute core: images in, activations out.

- :mod:`featx.compute.forward`: the forward loop (batches, devices, precision,
  the decode workers) that every engine and ``featx serve`` run;
- :mod:`featx.compute.device_decode`: decoding on the device, with PIL as the
  fallback and the one place a file's failure is caught;
- :mod:`featx.compute.ray_engine`: the same loop on a Ray cluster
  (:mod:`featx.compute.cluster` joins one, torch-free);
- :mod:`featx.compute.process`: process-wide settings made before torch loads.

Nothing is imported here, so that a torch-free caller (``fit --engine ray``) can
use :mod:`featx.compute.cluster` alone.
"""

__all__ = []
