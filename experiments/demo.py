"""``python -m experiments.demo``: the ``msftnet demo`` launcher
(``msftnet/launch/demo.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import demo as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
