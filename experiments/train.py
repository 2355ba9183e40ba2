"""``python -m experiments.train``: the ``msftnet train`` launcher
(``msftnet/launch/train.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import train as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
