"""``python -m experiments.train_shape``: the ``msftnet train_shape`` launcher
(``msftnet/launch/train_shape.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import train_shape as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
