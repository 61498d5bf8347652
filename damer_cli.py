r"""The `damer` command (installed by `pip install -e .`): one name for the entry points.

    damer train --config=configs/demo.py --workdir=/tmp/damer_demo
    damer evaluate --config=configs/demo.py --workdir=/tmp/damer_demo
    damer predict --config=configs/demo.py --workdir=/tmp/damer_demo --audio=music/
    damer ablation --config=configs/demo.py --workdir=/tmp/damer_ablation

`damer train|evaluate|predict FLAGS` runs `python main.py --mode=<subcommand> FLAGS`
and `damer ablation FLAGS` runs `python ablation.py FLAGS`: the script is executed as
`__main__` (`runpy`, as `python -m main` would), so its flags, `--help`, messages and
exit status are the script's own. Only the module named by the subcommand is
imported: main.py and ablation.py both define --config and --workdir, and absl flags
may be defined once per process.
"""

from __future__ import annotations

import runpy
import sys
from typing import Sequence

# Subcommand -> (module run as __main__, arguments put before the user's flags).
COMMANDS = {
    'train': ('main', ['--mode=train']),
    'evaluate': ('main', ['--mode=evaluate']),
    'predict': ('main', ['--mode=predict']),
    'ablation': ('ablation', []),
}

USAGE = """\
usage: damer <command> [flags]

commands:
  train      train (and evaluate) a model        = python main.py --mode=train
  evaluate   evaluate a checkpoint, write report = python main.py --mode=evaluate
  predict    valence/arousal of audio files      = python main.py --mode=predict
  ablation   the ablation grid and its table     = python ablation.py

`damer <command> --help` lists the command's flags. Examples:
  damer train --config=configs/demo.py --workdir=/tmp/damer_demo
  damer predict --config=configs/demo.py --workdir=/tmp/damer_demo --audio=music/
"""


def main(argv: Sequence[str] | None = None) -> None:
  """Runs the subcommand named in `argv[1]` (default: sys.argv) with the rest as flags.

  Args:
    argv: the command line, program name first; None reads sys.argv.

  Raises:
    SystemExit: status 0 after `damer --help`, 2 without a known subcommand (usage on
      stderr); else the script's own exit (absl's app.run always exits).
  """
  argv = list(sys.argv if argv is None else argv)
  command, flags = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
  if command in ('-h', '--help', 'help'):
    sys.stdout.write(USAGE)
    sys.exit(0)
  if command not in COMMANDS:
    problem = ('no command given' if command is None
               else f'unknown command {command!r}')
    sys.stderr.write(f'{USAGE}\ndamer: error: {problem}; choose from '
                     f'{", ".join(COMMANDS)}.\n')
    sys.exit(2)
  module, preset = COMMANDS[command]
  if module == 'main' and any(f.split('=')[0] in ('--mode', '-mode') for f in flags):
    sys.stderr.write(f'{USAGE}\ndamer: error: `damer {command}` sets --mode itself.\n')
    sys.exit(2)
  # runpy replaces sys.argv[0] with the script's path, so the flags parse exactly as
  # in `python main.py ...` (and ablation.md records a command that reruns the grid).
  sys.argv = [module, *preset, *flags]
  runpy.run_module(module, run_name='__main__', alter_sys=True)  # app.run exits.


if __name__ == '__main__':
  main()
