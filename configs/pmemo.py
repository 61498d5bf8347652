"""DAMER on PMEmo2019 (manual download; layout in docs/datasets.md).

    python main.py --config=configs/pmemo.py --workdir=/tmp/damer_pmemo \
        --config.dataset.manual_dir=/data/PMEmo2019

The first run builds the records (both views of every 1 s segment, labels averaged
over the annotations inside each segment, 20% of the tracks held out) into
config.dataset.data_dir, with build_report.json beside them: about 1 min of one core
and 1-2 GB (estimate; docs/datasets.md).
Full model size as in configs/default.py; meant for a GPU or TPU. Not trained on the
real download here yet, so no accuracy is claimed.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = 'pmemo'
  config.dataset.test_fraction = 0.2
  config.dataset.shuffle_buffer = 16384
  config.label_threshold = 0.0  # Labels rescaled from [0, 1] to [-1, 1]: > 0 <=> > 0.5.
  return config
