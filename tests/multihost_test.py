"""Several processes train as one: 2 processes x 2 CPU devices match 1 process x 4."""
import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np

from configs import digits
from kdjax import teachers
from kdjax import train
from tiny import assert_same_steps_up_to_rounding
from tiny import read_checkpoint
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One step per epoch (1437 digits, batch 1432), 3 epochs; mixup pairs examples
# across processes.
OVERRIDES = {'width': 4, 'batch_size': 1432, 'eval_batch_size': 360, 'num_epochs': 3,
             'warmup_epochs': 1.0, 'mixup_alpha': 1.0}


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_of_two_devices_train_like_one_process_of_four(tmp_path):
  single = str(tmp_path / 'single')
  config = digits.get_config()
  config.update(OVERRIDES)
  train.train_and_evaluate(config, single)

  multi = str(tmp_path / 'multi')
  env = with_devices(2)
  address = f'localhost:{_free_port()}'
  processes = [subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/digits.py',
       *(f'--config.{k}={v}' for k, v in OVERRIDES.items()), f'--workdir={multi}',
       '--distributed', f'--coordinator_address={address}', '--num_processes=2',
       f'--process_id={i}'], cwd=ROOT, env=env, text=True, stderr=subprocess.PIPE)
               for i in range(2)]
  logs = [p.communicate(timeout=300)[1] for p in processes]
  for p, log in zip(processes, logs):
    assert p.returncode == 0, log[-3000:]
  assert 'batch 1432 over 4 devices in 2 process(es)' in logs[0]
  assert 'epoch 3/3' in logs[0] and 'epoch 3/3' not in logs[1]  # process 0 reports

  with open(os.path.join(multi, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  assert [r['epoch'] for r in records] == [1, 2, 3]  # written once, by process 0
  with open(os.path.join(single, 'metrics.jsonl')) as f:
    expected_records = [json.loads(line) for line in f]
  for got_record, want_record in zip(records, expected_records):
    np.testing.assert_allclose(got_record['test_loss'], want_record['test_loss'], rtol=1e-4)

  got, want = (read_checkpoint(os.path.join(workdir, 'checkpoints', '3', 'default'))
               for workdir in (multi, single))
  # A run saved by two hosts teaches (and evaluates) on one.
  teacher = teachers.load(multi, num_classes=10)
  np.testing.assert_array_equal(teacher.variables['params']['classifier']['kernel'],
                                got['params']['classifier']['kernel'])
  assert_same_steps_up_to_rounding(got, want)


def test_sigterm_to_one_process_makes_every_process_save_the_same_step(tmp_path):
  # A preemption notice reaches one host: JAX's preemption sync service makes
  # both processes stop after the same call and save it.
  workdir = str(tmp_path / 'run')
  env = with_devices(2)
  address = f'localhost:{_free_port()}'
  processes = [subprocess.Popen(
      [sys.executable, 'main.py', '--config=configs/digits.py', '--config.width=4',
       '--config.num_epochs=2', '--config.steps_per_call=1', '--config.log_every_steps=1',
       f'--workdir={workdir}', '--distributed', f'--coordinator_address={address}',
       '--num_processes=2', f'--process_id={i}'], cwd=ROOT, env=env, text=True,
      stderr=subprocess.PIPE) for i in range(2)]
  lines = []
  for line in processes[0].stderr:
    lines.append(line)
    if ' step 5/44 ' in line:
      processes[1].send_signal(signal.SIGTERM)
      break
  logs = [''.join(lines) + processes[0].communicate(timeout=300)[1],
          processes[1].communicate(timeout=300)[1]]
  saved = []
  for process, log in zip(processes, logs):
    assert process.returncode == 128 + signal.SIGTERM, log[-3000:]
    saved.append(int(re.search(r'Stopped by SIGTERM after saving step (\d+) ', log)[1]))
  assert saved[0] == saved[1] and 5 <= saved[0] < 44
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(saved[0])))
