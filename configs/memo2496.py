"""DAMER on Memo2496 (manual download; layout in docs/datasets.md).

    python main.py --config=configs/memo2496.py --workdir=/tmp/damer_memo2496 \
        --config.dataset.manual_dir=/data/Memo2496

The first run builds the records (both views of every 1 s segment, labels averaged
over the annotations inside each segment, 20% of the tracks held out) into
config.dataset.data_dir, with build_report.json beside them: about 10 min of one core
and ~33 GB if the 2,496 tracks average 3 min (estimate: 1.3 ms of CPU and 74 KB per
second of labelled audio; docs/datasets.md).
Full model size as in configs/default.py; meant for a GPU or TPU. Not trained on the
real download here yet, so no accuracy is claimed.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.name = 'memo2496'
  config.dataset.test_fraction = 0.2
  config.dataset.shuffle_buffer = 16384
  config.label_threshold = 0.0  # Labels in [-1, 1]: high when > 0.
  return config
