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


def run(module) -> None:
  """``absl.app.run(module.main)``, with every flag that the launcher
  modules define (the launcher's own and the shared ones it imports:
  ``inputs``, ``fit_flags``) as key flags of the command, so that
  ``--help`` lists them (absl lists only the main module's)."""
  from absl import app
  from absl import flags
  fv = flags.FLAGS
  for name in list(fv.flags_by_module_dict()):
    if name == module.__name__ or name.startswith(__name__ + "."):
      for flag in fv.get_flags_for_module(name):
        fv.register_key_flag_for_module(sys.argv[0], flag)
  app.run(module.main)
