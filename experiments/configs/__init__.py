"""Training configs by path (``--config=experiments/configs/NAME.py``): each
file is the package's ``msftnet/configs/NAME.py`` (``msftnet train
--config=NAME``)."""
