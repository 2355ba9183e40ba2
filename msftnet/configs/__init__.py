"""Training configs (``msftnet train --config=NAME`` reads ``NAME.py``;
each docstring gives its command, runtime and expected result)."""
