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

from absl import app
from absl import flags
from etils import epath
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
  report = epath.Path(builder.data_dir) / 'build_report.json'
  if report.exists():  # Real datasets (local or gs:// data dirs).
    from input_pipeline import build_report  # pylint: disable=g-import-not-at-top
    data = json.loads(report.read_text())
    summary = build_report.BuildReport(
        dataset=data['dataset'], manual_dir=data['manual_dir'], tracks=data['tracks'],
        segments=data['segments'], dropped=data['dropped'], skipped=data['skipped'],
        notes=data['notes'])
    print('\n'.join(summary.summary_lines()))
    print(f'Full report: {report}')


if __name__ == '__main__':
  app.run(main)
