"""``python -m experiments.fit``: the ``msftnet fit`` launcher
(``msftnet/launch/fit.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import fit as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
