"""``python -m experiments.make_dataset``: the ``msftnet make_dataset`` launcher
(``msftnet/launch/make_dataset.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import make_dataset as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
