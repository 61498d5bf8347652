"""Test setup: two host CPU devices (so pmap has a real device axis) and tiny configs."""

import os
import subprocess
import sys
import tempfile

# Before JAX is imported anywhere: two CPU devices, CPU only.
# The tests' tiny programs are compiled far more often than they run long: a lower
# LLVM optimisation level cuts the fast tier's cold time (nothing cached) from 134 s
# to 94 s on the 2-core CPU and leaves its warm time as it was (docs/performance.md).
# Flags the caller set in XLA_FLAGS come after these and win; DAMER_TEST_XLA_FLAGS=''
# compiles as a real run does.
COMPILE_FAST_FLAGS = os.environ.get('DAMER_TEST_XLA_FLAGS',
                                    '--xla_backend_optimization_level=0 '
                                    '--xla_llvm_disable_expensive_passes=true')
os.environ['XLA_FLAGS'] = (COMPILE_FAST_FLAGS + ' ' + os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=2').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One persistent compilation cache for the session and its subprocesses: the tiny
# model is compiled once, not once per test and per main.py run.
# One directory for every xdist worker; it may also outlive the run (it is only a cache).
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), f'damer_jax_test_cache_{os.getuid()}'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')  # Cache every compile.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # The repository.

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Overrides that shrink configs/demo.py to seconds; also used as main.py flags.
TINY_OVERRIDES = {
    'dataset.num_tracks': 8,
    'dataset.track_seconds': 3.0,
    'dataset.test_fraction': 0.25,
    'dataset.shuffle_buffer': 64,
    'model.width': 16,
    'model.conv_features': (4, 8),
    'model.num_heads': 2,
    'model.encoder_layers': 1,  # One layer and one DSAF block: half the program to
    'dsaf.num_blocks': 1,  # compile, every part of the model still there.
    'batch_size': 8,
    'eval_batch_size': 8,
    'num_train_steps': 6,
    'log_every_steps': 2,
    'eval_every_steps': 3,
    'checkpoint_every_steps': 3,
}


def tiny_config(**overrides):
  """configs/demo.py shrunk by TINY_OVERRIDES, then `overrides` (dots as '__')."""
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  items = dict(TINY_OVERRIDES)
  items.update({k.replace('__', '.'): v for k, v in overrides.items()})
  for dotted, value in items.items():
    node = config
    *parents, leaf = dotted.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def tiny_flags(workdir, data_dir, **overrides):
  """main.py arguments for the tiny config."""
  items = dict(TINY_OVERRIDES)
  items.update({k.replace('__', '.'): v for k, v in overrides.items()})
  args = ['--config=configs/demo.py', f'--workdir={workdir}',
          f'--config.dataset.data_dir={data_dir}']
  for k, v in items.items():
    v = ','.join(map(str, v)) if isinstance(v, tuple) else v
    args.append(f'--config.{k}={v}')
  return args


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One TFDS data dir shared by the whole session (the tiny dataset is built once)."""
  return str(tmp_path_factory.mktemp('tfds'))


def run_main(args, **kwargs):
  """Runs main.py with `args` in a subprocess; returns the CompletedProcess."""
  return subprocess.run([sys.executable, 'main.py', *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, env=dict(os.environ), timeout=600,
                        check=False, **kwargs)


@pytest.fixture(scope='session')
def trained_workdir(tmp_path_factory, data_dir):
  """A workdir trained by main.py on the tiny config (6 steps, checkpoints 3 and 6).

  Shared by the tests of training outputs, evaluation and prediction; tests that write
  into a workdir copy it first.
  """
  workdir = tmp_path_factory.mktemp('trained') / 'run'
  result = run_main(tiny_flags(workdir, data_dir))
  assert result.returncode == 0, result.stderr[-4000:]
  return workdir


def rerun_with_production_compile(request) -> bool:
  """Runs the calling test again in a subprocess compiled as a real run is (without
  COMPILE_FAST_FLAGS) and fails if it fails there; returns False when this process
  already compiles that way (then the caller runs its own body).

  For the few tests of bit-exact ties: at XLA's backend optimisation level 0 two
  identical rows of a batch can come out one ulp apart.
  """
  if not COMPILE_FAST_FLAGS:
    return False
  env = dict(os.environ, DAMER_TEST_XLA_FLAGS='')
  env['XLA_FLAGS'] = env['XLA_FLAGS'].replace(COMPILE_FAST_FLAGS, '')
  result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                           request.node.nodeid], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
  return True


# End-to-end files whose tests take the longest (docs/performance.md, "The test suite"):
# started first, so that the two xdist workers (work stealing, pyproject.toml) do not
# end with one long test running alone.
SLOW_FILES = ('test_main.py', 'test_multiprocess.py', 'test_ablation.py', 'test_grid.py',
              'test_device_count.py', 'test_real_datasets.py')


def pytest_collection_modifyitems(config, items):
  del config
  rank = lambda item: next((i for i, name in enumerate(SLOW_FILES)
                            if item.nodeid.split('::')[0].endswith(name)), len(SLOW_FILES))
  items.sort(key=rank)  # Stable: the order within each file is kept.
