"""``python -m experiments.simulate``: the ``msftnet simulate`` launcher
(``msftnet/launch/simulate.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import simulate as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
