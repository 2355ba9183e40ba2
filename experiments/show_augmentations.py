"""``python -m experiments.show_augmentations``: the ``msftnet show_augmentations`` launcher
(``msftnet/launch/show_augmentations.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import show_augmentations as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
