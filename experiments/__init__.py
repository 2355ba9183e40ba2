"""``python -m experiments.NAME`` from a checkout: the ``msftnet NAME``
launchers (``msftnet/launch/NAME.py``); training configs in
``experiments/configs/`` (the package's ``msftnet/configs/``)."""
