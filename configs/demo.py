"""CPU-sized demo on the embedded synthetic dataset; needs no download.

    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo

240 synthetic tracks of 6 s (1,152 train / 288 test segments, 48 held-out tracks),
the full DAMER (DSAF + PCL + SAML) at 0.27M parameters, 600 steps of batch 32.

Wall time and accuracy, measured: README.md ("Two commands"). The 48 held-out tracks
leave a standard error of 2-3 points and the demo is near its data ceiling, so it
cannot tell the modules apart; configs/benchmark.py is the data for that.
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
  config.pcl.warmup_steps = 200
  config.saml.queue_size = 512

  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_steps = 50

  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 600
  config.log_every_steps = 50
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  return config
