"""The launchers: absl flags over one library function each.

``msftnet COMMAND`` (``msftnet.cli``) runs ``msftnet.launch.COMMAND``; from
a checkout, ``python -m experiments.COMMAND`` runs the same. Each module
defines its flags at import, so import one launcher per process.
"""

import logging
import sys

# JAX probes for a TPU at start-up and logs the failure at INFO level through
# absl; on CPU and GPU machines that line is noise.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def print_errors(bad) -> None:
  """One ``error: ...`` line on stderr per ``(path, sentence)`` of ``bad``."""
  for _, sentence in bad:
    print(f"error: {sentence}", file=sys.stderr)
