"""Fields shared by all training configs, by path: ``msftnet/configs/base.py``."""

from msftnet.configs.base import base_config  # noqa: F401

__all__ = ["base_config"]
