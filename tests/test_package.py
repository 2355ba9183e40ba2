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


@pytest.mark.launcher
def test_command_help_lists_the_flags():
  """``msftnet COMMAND --help`` lists the command's flags, also those it
  shares with other launchers (absl alone lists only the main module's)."""
  import subprocess
  import sys
  out = subprocess.run(
      [sys.executable, "-c", "import sys; from msftnet import cli; "
       "sys.exit(cli.main(['msftnet', 'fit', '--help']))"],
      capture_output=True, text=True, timeout=120)
  text = out.stdout + out.stderr
  # Its own, the shared fit flags' and the shared input flags'.
  for flag in ("--out", "--[no]mesh", "--starts", "--coarse_survivors", "--mask"):
    assert f"  {flag}:" in text, (flag, text[-2000:])
