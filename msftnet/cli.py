"""The ``msftnet`` command: one entry point for the launchers.

  msftnet reconstruct --out=DIR PATTERN ...      (msftnet.launch.reconstruct)
  msftnet fit --out=DIR PATTERN ...              (msftnet.launch.fit)
  msftnet train --config=cpu --workdir=DIR       (msftnet.launch.train)
  msftnet COMMAND --help                         (the command's flags)

Hyphens and underscores are the same (``make-dataset``, ``make_dataset``).
Each command is the launcher module ``msftnet.launch.COMMAND``, run with
the remaining arguments; it works from any directory (``python -m
experiments.COMMAND`` in a checkout runs the same). ``--config=NAME`` (no
``.py``, no ``/``) names a packaged training config
(``msftnet/configs/NAME.py``); a path works as well.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "reconstruct": "network + MSFT refinement of measured patterns",
    "fit": "forward-fit parametrised solids (the classical baseline)",
    "train": "train a network (data parallel, resumable)",
    "train_shape": "train the shape network (class, size, orientation)",
    "evaluate": "the paper's evaluations (test set, crop, experiment)",
    "simulate": "simulate patterns of solids",
    "make_dataset": "write a dataset of solids and patterns",
    "export_model": "turn a training run into a model directory",
    "demo": "end-to-end demo on a simulated particle",
    "show_augmentations": "figure of the detector-artefact filters",
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: msftnet COMMAND [FLAGS] [ARGS]", "", "commands:"]
  lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
  lines += ["", "msftnet COMMAND --help lists a command's flags."]
  return "\n".join(lines)


def _rewrite(args: list[str]) -> list[str]:
  """``--config=NAME[:ARGS]`` -> the bundled config file's path."""
  out = []
  for a in args:
    if a.startswith("--config="):
      name, sep, rest = a[len("--config="):].partition(":")
      if name and not name.endswith(".py") and "/" not in name:
        configs = os.path.dirname(
            importlib.import_module("msftnet.configs").__file__)
        a = f"--config={os.path.join(configs, name + '.py')}{sep}{rest}"
    out.append(a)
  return out


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(usage())
    return 0 if len(argv) >= 2 else 2
  command = argv[1].replace("-", "_")      # make-dataset == make_dataset
  if command not in COMMANDS:
    print(f"error: unknown command {command!r}, expected one of "
          f"{', '.join(COMMANDS)}.", file=sys.stderr)
    return 2
  module = importlib.import_module(f"msftnet.launch.{command}")
  from msftnet import launch
  sys.argv = [f"msftnet {command}", *_rewrite(argv[2:])]
  # absl's --help prints the __main__ module's docstring: the command's.
  sys.modules["__main__"].__doc__ = module.__doc__
  launch.run(module)
  return 0


if __name__ == "__main__":
  sys.exit(main())
