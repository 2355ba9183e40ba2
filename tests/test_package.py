"""The package's top level: public names and lazily reached submodules."""

import importlib

import pytest

import msftnet


def test_submodules_are_reachable_from_the_package():
  for name in msftnet._SUBMODULES:
    assert getattr(msftnet, name) is importlib.import_module(f"msftnet.{name}")
    assert name in dir(msftnet)
  assert callable(msftnet.msft) and callable(msftnet.pmsft)
  for name in msftnet.__all__:
    assert getattr(msftnet, name) is not None
  with pytest.raises(AttributeError, match="no attribute 'reconstruction'"):
    msftnet.reconstruction
