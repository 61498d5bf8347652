"""Two processes on localhost (JAX's distributed runtime, gloo CPU collectives) train,
checkpoint, restore and evaluate exactly like one process with two devices (this pytest
process)."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np

from tests import multiprocess_worker
from tests.conftest import ROOT

STEPS = 3


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}  # The worker sets it.
  port, out = str(_free_port()), tmp_path / 'multi.npz'
  workers = [subprocess.Popen([sys.executable, '-m', 'tests.multiprocess_worker', str(i),
                               '2', port, str(out), str(STEPS), str(tmp_path / 'run')],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
  single = multiprocess_worker.train_steps(STEPS)  # Meanwhile: 1 process, 2 devices.
  single.update({f'eval/{k}': np.asarray(v)
                 for k, v in multiprocess_worker.evaluate_uneven().items()})
  for i, worker in enumerate(workers):
    log = worker.communicate(timeout=300)[0]
    assert worker.returncode == 0, log[-3000:]
    assert f'done {i} {STEPS}' in log
  multi = np.load(out)
  assert (tmp_path / 'run' / 'checkpoints' / str(STEPS)).is_dir()
  assert sorted(single) == sorted(multi.files)
  assert any('saml' in k for k in single) and any('pcl' in k for k in single)
  assert int(multi['eval/num_examples']) == 10  # Both processes' examples, once each.
  for key, value in single.items():  # Params, SAML queue, PCL table, eval metrics.
    np.testing.assert_array_equal(value, multi[key], err_msg=key)
  # The evaluate mode on the checkpoint: every process gets all 10 examples' metrics
  # (no process returns nothing), and process 0 alone wrote the report.
  reports = [json.loads(pathlib.Path(f'{out}.evaluate{i}.json').read_text())
             for i in range(2)]
  assert reports[0] == reports[1]
  assert reports[0]['num_segments'] == 10 and reports[0]['step'] == STEPS
  written = json.loads((tmp_path / 'run' / 'report' / 'metrics.json').read_text())
  assert written == reports[0]
