"""Thin absl launchers over the msftnet library (``python -m experiments.NAME``)."""

import logging

# JAX probes for a TPU at start-up and logs the failure at INFO level through
# absl; on CPU and GPU machines that line is noise.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
