"""``python -m experiments.reconstruct``: the ``msftnet reconstruct`` launcher
(``msftnet/launch/reconstruct.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import reconstruct as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
