"""``python -m experiments.export_model``: the ``msftnet export_model`` launcher
(``msftnet/launch/export_model.py``, whose docstring is this module's help)."""

from msftnet import launch
from msftnet.launch import export_model as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  launch.run(_launcher)
