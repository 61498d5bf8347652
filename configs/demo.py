"""CPU-sized demo on the embedded synthetic dataset; needs no download.

    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo

Expected (measured on a 2-core CPU machine, see README): builds the records, trains
and evaluates in a few minutes; the last line of /tmp/damer_demo/eval_metrics.jsonl
shows arousal and valence accuracy on held-out tracks. The figures are in
docs/demo.md.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset.num_tracks = 240
  config.dataset.track_seconds = 6.0
  config.dataset.shuffle_buffer = 1024

  config.model.width = 64
  config.model.conv_features = (16, 32)
  config.model.encoder_layers = 1
  config.model.num_heads = 4
  config.dsaf.num_blocks = 1

  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 50

  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 600
  config.log_every_steps = 50
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
