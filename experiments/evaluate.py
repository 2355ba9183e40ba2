"""``python -m experiments.evaluate``: the ``msftnet evaluate`` launcher
(``msftnet/launch/evaluate.py``, whose docstring is this module's help)."""

from absl import app

from msftnet.launch import evaluate as _launcher

__doc__ = _launcher.__doc__

if __name__ == "__main__":
  app.run(_launcher.main)
