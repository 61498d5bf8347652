r"""Builds a config's records without training (e.g. on a CPU box before a TPU run).

    python -m input_pipeline.build --config=configs/demo.py \
        [--config.dataset.data_dir=DIR]
    python -m input_pipeline.build --config=configs/memo2496.py \
        --config.dataset.manual_dir=/data/Memo2496 [--config.dataset.num_workers=8]

Prints the records' folder, the examples per split and, for a real dataset, the build
report (also in build_report.json beside the records). Training builds them on its
first run anyway; this only lets the (CPU-bound) build happen separately.
"""

import json
import os

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
  report = os.path.join(builder.data_dir, 'build_report.json')
  if os.path.exists(report):
    from input_pipeline import manual  # pylint: disable=g-import-not-at-top
    with open(report, encoding='utf-8') as f:
      data = json.load(f)
    summary = manual.BuildReport(dataset=data['dataset'], manual_dir=data['manual_dir'],
                                 tracks=data['tracks'], segments=data['segments'],
                                 dropped=data['dropped'],
                                 skipped=data['skipped'], notes=data['notes'])
    print('\n'.join(summary.summary_lines()))
    print(f'Full report: {report}')


if __name__ == '__main__':
  app.run(main)
