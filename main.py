r"""DAMER: train, evaluate or predict.

    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo
    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo --mode=evaluate
    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo \
        --config.num_train_steps=1000 --config.dsaf.enabled=False
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from damer_jax import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and logs.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict'], 'What to run.')
flags.DEFINE_string('audio', None, 'predict: an audio file or a folder of them.')
flags.DEFINE_string('output', None, 'predict: JSON-lines output file (default stdout).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO records of orbax's per-save chatter; warnings and errors pass."""

  def filter(self, record):
    return record.levelno >= logging.logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  if FLAGS.mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  elif FLAGS.mode == 'evaluate':
    print(train.evaluate(FLAGS.config, FLAGS.workdir))
  else:
    raise app.UsageError('--mode=predict is not part of this release yet.')


if __name__ == '__main__':
  app.run(main)
