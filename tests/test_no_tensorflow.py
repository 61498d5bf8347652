"""damer_jax, damer_audio and damer_data import and run without TensorFlow."""

import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

BLOCK_TENSORFLOW = textwrap.dedent('''
    import sys

    class BlockTensorFlow:
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'tensorflow_datasets'):
          raise ImportError('TensorFlow is blocked in this test')
        return None

    sys.meta_path.insert(0, BlockTensorFlow())
''')

# The generated benchmark (audio, both views, raters) and its in-memory dataset.
BENCHMARK_SCRIPT = BLOCK_TENSORFLOW + textwrap.dedent('''
    from damer_audio import features
    from input_pipeline import sources, va_benchmark
    spec = va_benchmark.BenchmarkSpec.tiny(num_train_tracks=2)
    data = va_benchmark.generate(spec, features.FeatureSpec(), num_workers=1)
    va_benchmark.describe(data)
    assert 'tensorflow' not in sys.modules
    print('OK', len(data['train']['mel']))
''')

# The audio layer (no JAX either), then the data layer: a WAV written here (stereo,
# 44.1 kHz, float samples), decoded to mono at 22,050 Hz and turned into both views.
AUDIO_SCRIPT = BLOCK_TENSORFLOW + textwrap.dedent('''
    import numpy as np, soundfile as sf
    import damer_audio
    from damer_audio import audio, features
    path = sys.argv[1]
    t = np.arange(int(2.5 * 44100)) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t),
                       0.25 * np.sin(2 * np.pi * 880 * t)], axis=1).astype(np.float32)
    sf.write(path, stereo, 44100, subtype='FLOAT')
    assert path.endswith(audio.AUDIO_EXTENSIONS)
    spec = features.FeatureSpec()
    samples = audio.load_audio(path, spec.sample_rate)
    assert samples.dtype == np.float32 and samples.ndim == 1, samples.shape
    assert abs(len(samples) - 2.5 * spec.sample_rate) <= 1, len(samples)
    np.testing.assert_array_equal(samples, audio.to_mono(stereo, 44100, spec.sample_rate))
    mel, coch = features.compute_views(features.segment_audio(samples, spec), spec)
    assert mel.shape == (2, spec.n_mels, spec.num_frames), mel.shape
    assert coch.shape == (2, spec.n_coch, spec.num_frames), coch.shape
    assert np.isfinite(mel).all() and np.isfinite(coch).all()
    assert not any(m.split('.')[0] in ('jax', 'jaxlib', 'flax') for m in sys.modules)
    import damer_data
    from damer_data import dataset, hosts
    assert hosts.max_over_processes(3) == 3
    assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules
    print('OK', mel.shape[0])
''')

# A record build's own modules (reading a download; what a worker process runs: one
# track decoded, labelled and turned into both views; a checked record; the worker
# pool) and the config digest: no TensorFlow and no JAX.
WORKER_SCRIPT = BLOCK_TENSORFLOW + textwrap.dedent('''
    import concurrent.futures, os
    import numpy as np, soundfile as sf
    from damer_audio import features
    from damer_data import workers
    from input_pipeline import build_report, digest, download, records, tracks
    folder = sys.argv[1]
    t = np.arange(3 * 22050) / 22050
    sf.write(os.path.join(folder, 'clip.wav'), 0.5 * np.sin(2 * np.pi * 440 * t), 22050)
    with open(os.path.join(folder, 'labels.csv'), 'w') as f:
      f.write('song_id;sample_500ms;sample_1500ms\\n clip ;0.5;-0.5\\n')
    report = build_report.BuildReport('t')
    index = download.FileIndex(folder)
    times, values = download.wide_annotations(
        download.read_csv(index.find('labels.csv')), ('song_id',), report)['clip']
    spec = features.FeatureSpec()
    job = tracks.TrackJob(track_id=0, name='clip',
                          audio_path=index.audio_files('', report)['clip'],
                          times_s=times, valence=values, arousal=-values)
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
      result, = workers.ordered_map(
          lambda j: tracks.process_track(j, spec), [job], executor, window=2)
    assert result.error is None, result.error
    assert list(result.labelled) == [0, 1] and result.mel.shape == (2, 128, 87)
    example = records.example(
        spec=spec, mel=result.mel[0], coch=result.coch[0], valence=result.valence[0],
        arousal=result.arousal[0], track_id=0, track_name='clip', style_id=-1, index=0,
        start_s=0.0)
    assert example['valence'] == 0.5 and example['arousal'] == -0.5
    closure = digest.module_closure('input_pipeline.datasets.pmemo.pmemo_dataset_builder')
    assert 'input_pipeline.tracks' in closure  # Read, not imported.
    heavy = ('tensorflow', 'tensorflow_datasets', 'jax', 'jaxlib', 'flax')
    assert not [m for m in sys.modules if m.split('.')[0] in heavy]
    print('OK', len(result.labelled))
''')

# What a synthetic_va build hands its worker processes, run where TensorFlow is blocked.
SYNTHETIC_WORKER_SCRIPT = BLOCK_TENSORFLOW + textwrap.dedent('''
    import pickle
    with open(sys.argv[1], 'rb') as f:
      make = pickle.load(f)
    examples = make(3)
    assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules
    print('OK', len(examples), examples[0][0])
''')

SCRIPT = BLOCK_TENSORFLOW + textwrap.dedent('''
    import functools, pkgutil, importlib
    import damer_jax
    for m in pkgutil.iter_modules(damer_jax.__path__):
      importlib.import_module('damer_jax.' + m.name)
    from flax import jax_utils
    import jax, numpy as np
    from damer_jax import models, train, reporting
    from tests.conftest import tiny_config
    config = tiny_config()
    model = models.create_model(config)
    state = jax_utils.replicate(train.create_train_state(config, model, jax.random.key(0), 8))
    step = jax.pmap(functools.partial(train.train_step, model=model, config=config,
                                      schedule=train.learning_rate_schedule(config)),
                    axis_name=train.AXIS)
    n = jax.local_device_count()
    batch = dict(mel=np.zeros((n, 2, 128, 87), np.float32),
                 coch=np.zeros((n, 2, 84, 87), np.float32),
                 valence=np.ones((n, 2), np.float32), arousal=-np.ones((n, 2), np.float32),
                 index=np.arange(2 * n).reshape(n, 2), track_id=np.zeros((n, 2), np.int32))
    state, metrics = step(state, batch)
    writer = reporting.create_writer(sys.argv[1], True)
    writer.write_scalars(1, {'loss': float(metrics['loss'][0])})
    from damer_jax import predict
    host = jax_utils.unreplicate(state)
    predictor = predict.Predictor(config, {'params': host.params,
                                           'batch_stats': host.batch_stats})
    assert len(predictor.predict(np.zeros(44100, np.float32), sample_rate=22050)['segments']) == 2
    assert 'tensorflow' not in sys.modules
    print('OK', int(state.step[0]))
''')


def test_damer_jax_runs_with_tensorflow_blocked(tmp_path):
  result = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('OK 1')


def test_the_benchmark_generates_without_tensorflow():
  result = subprocess.run([sys.executable, '-c', BENCHMARK_SCRIPT], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ), timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'OK 6'


def test_audio_and_data_layers_run_with_tensorflow_blocked(tmp_path):
  result = subprocess.run([sys.executable, '-c', AUDIO_SCRIPT, str(tmp_path / 'tone.wav')],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ),
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'OK 2'


def test_a_build_worker_runs_without_tensorflow_or_jax(tmp_path):
  result = subprocess.run([sys.executable, '-c', WORKER_SCRIPT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'OK 2'


def test_a_synthetic_build_worker_runs_without_tensorflow(tmp_path):
  # The demo build's workers (num_workers > 1, 32+ tracks) would each import
  # TensorFlow if the function they run came from the builder's module.
  import pickle  # pylint: disable=g-import-not-at-top
  from input_pipeline.datasets.synthetic_va import synthetic_va_dataset_builder as builder  # pylint: disable=g-import-not-at-top
  make = builder.track_fn(builder.make_config(num_tracks=4, track_seconds=2.0))
  path = tmp_path / 'fn.pkl'
  path.write_bytes(pickle.dumps(make))
  result = subprocess.run([sys.executable, '-c', SYNTHETIC_WORKER_SCRIPT, str(path)],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ),
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == 'OK 2 synth00003_00000'
