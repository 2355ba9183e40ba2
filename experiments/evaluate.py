"""``python -m experiments.evaluate``: the ``msftnet evaluate`` launcher
(``msftnet/launch/evaluate.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import evaluate as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
