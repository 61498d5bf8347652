r"""`tfds build` for this project's builders, without apache_beam.

    python -m input_pipeline.tfds_cli build input_pipeline/datasets/memo2496 \
        --manual_dir=/data/Memo2496 --data_dir=/data/tfds

The `tfds` console script of tensorflow-datasets 4.9.10 imports apache_beam at start-up
(for its `convert_format` command) and stops with "No module named 'apache_beam'"
when Beam is not installed; installing Beam into this environment would downgrade
protobuf, pyarrow and pillow. This module runs the very same `tfds build` command
(tensorflow_datasets.scripts.cli.build: same flags, same builder loading from a
dataset folder, same --manual_dir / --data_dir / --config / --overwrite handling) and
nothing else. Where apache_beam is installed, `tfds build ...` with the same arguments
is equivalent.

The builders' default config equals configs/<name>.py with its default fields, so a
training run with the same data_dir reuses these records.
"""

import dataclasses

from absl import app
import simple_parsing
import tensorflow_datasets as tfds
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils


@dataclasses.dataclass(frozen=True, kw_only=True)
class Args(cli_utils.Args):
  """TFDS CLI, `build` command only."""

  command: build.Args = simple_parsing.subparsers({'build': build.Args})
  """The command to execute."""

  def execute(self) -> None:
    self.command.execute()


def main(args: Args) -> None:
  tfds.core.visibility.set_availables([
      tfds.core.visibility.DatasetType.TFDS_PUBLIC,
      tfds.core.visibility.DatasetType.COMMUNITY_PUBLIC,
  ])
  args.execute()


def launch_cli() -> None:
  # The builders import `input_pipeline`: the project is installed (pip install -e .).
  app.run(main, flags_parser=cli_utils.make_flags_parser(
      Args, description='tfds build (apache_beam-free) for damer-jax datasets'))


if __name__ == '__main__':
  launch_cli()
