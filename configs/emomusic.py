"""DAMER on emoMusic / 1000songs (manual download; layout in docs/datasets.md).

    python main.py --config=configs/emomusic.py --workdir=/tmp/damer_emomusic \
        --config.dataset.manual_dir=/data/emoMusic

The first run builds the records (both views of every 1 s segment, labels averaged
over the annotations inside each segment, 20% of the tracks held out) into
config.dataset.data_dir, with build_report.json beside them: about 1 min of one core
and ~1.6 GB for 744 clips (estimate; docs/datasets.md).
Full model size as in configs/default.py; meant for a GPU or TPU. Not trained on the
real download here yet, so no accuracy is claimed.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = 'emomusic'
  config.dataset.test_fraction = 0.2
  config.dataset.shuffle_buffer = 16384
  config.label_threshold = 0.0  # Labels in [-1, 1]: high when > 0.
  return config
