r"""DAMER: train, evaluate or predict.

    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo
    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo --mode=evaluate
    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo --mode=predict \
        --audio=music/ --output=out/predictions.jsonl --figures=out/
    python main.py --config=configs/demo.py --workdir=/tmp/damer_demo \
        --config.num_train_steps=1000 --config.dsaf.enabled=False

evaluate writes <workdir>/report/ (report.md, metrics.json, figures); predict writes
one JSON line per audio file and exits with status 1 if any file failed.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from damer_jax import evaluate
from damer_jax import train
from input_pipeline import sources

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and logs.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict'], 'What to run.')
flags.DEFINE_string('audio', None, 'predict: an audio file or a folder of them.')
flags.DEFINE_string('output', None, 'predict: JSON-lines output file (default stdout).')
flags.DEFINE_string('figures', None,
                    'predict: folder for figures: one per file, overview.png of all files '
                    'and index.md, a page with both and a table (default: none).')
flags.DEFINE_integer('checkpoint_step', None,
                     'evaluate/predict: the checkpoint step to use (default: the latest).')
flags.DEFINE_integer('num_workers', None,
                     'predict: threads decoding audio ahead of the model (default: CPUs).')
flags.DEFINE_bool('distributed', False,
                  'Multi-process run: call jax.distributed.initialize(), which finds the '
                  'other processes itself on Cloud TPU pod slices and SLURM/Open MPI '
                  'clusters. Set implicitly by --coordinator_address.')
flags.DEFINE_string('coordinator_address', None,
                    'Multi-process run without auto-detection: host:port of process 0.')
flags.DEFINE_integer('num_processes', None, 'With --coordinator_address: process count.')
flags.DEFINE_integer('process_id', None, 'With --coordinator_address: this process, 0..N-1.')
flags.DEFINE_string('compilation_cache', train.DEFAULT_COMPILATION_CACHE,
                    'Persistent XLA compilation cache: a restart or resume loads the '
                    'compiled steps instead of compiling again. Empty: off. The '
                    'environment variable JAX_COMPILATION_CACHE_DIR, when set, wins.')
flags.mark_flags_as_required(['config', 'workdir'])


def _initialize_distributed():
  """Joins the other processes of a multi-process run (no-op for one process)."""
  if FLAGS.coordinator_address:
    if FLAGS.num_processes is None or FLAGS.process_id is None:
      raise app.UsageError('--coordinator_address needs --num_processes and --process_id.')
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes,
                               process_id=FLAGS.process_id)
  elif FLAGS.distributed:
    jax.distributed.initialize()


class _QuietLibraries(logging.logging.Filter):
  """Drops INFO records of orbax's per-save chatter; warnings and errors pass."""

  def filter(self, record):
    return record.levelno >= logging.logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  logging.get_absl_handler().addFilter(_QuietLibraries())
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  _initialize_distributed()
  train.use_compilation_cache(FLAGS.compilation_cache)
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(),
               jax.process_count(), jax.local_devices())
  if FLAGS.mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                             sources.create_dataset(FLAGS.config))
    return
  try:
    if FLAGS.mode == 'evaluate':
      result = evaluate.evaluate(FLAGS.config, FLAGS.workdir, FLAGS.checkpoint_step,
                                 sources.create_dataset(FLAGS.config))
      if jax.process_index() == 0:  # Only process 0 writes the report and prints.
        print(json.dumps({k: result[k] for k in ('step', 'num_segments', 'num_tracks')}
                         | {'fusion': result['segment']['fusion']}, sort_keys=True))
      return
    if not FLAGS.audio:
      raise app.UsageError('--mode=predict needs --audio=FILE_OR_FOLDER.')
    from damer_jax import predict  # pylint: disable=g-import-not-at-top
    predictor = predict.Predictor.from_workdir(FLAGS.workdir, FLAGS.config,
                                               FLAGS.checkpoint_step)
    _, failed = predict.predict_to_jsonl(predictor, FLAGS.audio, FLAGS.output,
                                         FLAGS.num_workers, FLAGS.figures)
  except (FileNotFoundError, ValueError) as error:  # Missing checkpoint, wrong config.
    sys.exit(f'error: {error}')
  if failed:
    sys.exit(f'error: {failed} file(s) could not be predicted; see the lines with '
             '"error".')


if __name__ == '__main__':
  app.run(main)
