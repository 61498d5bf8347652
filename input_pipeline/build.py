r"""Builds a config's records without training (e.g. on a CPU box before a TPU run).

    python -m input_pipeline.build --config=configs/demo.py \
        [--config.dataset.data_dir=DIR]

Prints the records' folder and the examples per split. Training builds them on its first
run anyway; this only lets the (CPU-bound) build happen separately.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from input_pipeline import pipeline

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.')
flags.mark_flags_as_required(['config'])


def main(argv):
  del argv
  builder = pipeline.prepare(_CONFIG.value)
  print(builder.data_dir)
  for name, split in builder.info.splits.items():
    print(f'{name}: {split.num_examples} examples')


if __name__ == '__main__':
  app.run(main)
