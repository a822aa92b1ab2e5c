"""Guards before a run starts, as a user meets them through main.py: one run per
workdir, refusals before the data, one-line errors for bad config values."""
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import digits
from kdjax import checkpoint
from kdjax import errors
from kdjax import train
from kdjax import workdir as workdir_lib
from kdjax.data import arrays
from tiny import flat_leaves
from tiny import random_teacher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {'width': 4, 'num_epochs': 2}  # digits: 22 steps an epoch
RUN = ('--config=configs/digits.py', *(f'--config.{k}={v}' for k, v in TINY.items()))


def _main(*args, **kwargs):
  return subprocess.Popen([sys.executable, 'main.py', *args], cwd=ROOT, text=True,
                          stderr=subprocess.PIPE, stdout=subprocess.PIPE, **kwargs)


def _listing(directory):
  return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(directory) for f in files}


def test_a_second_run_in_the_same_workdir_is_refused_and_the_first_ends_as_a_lone_run(
    tmp_path):
  lone = str(tmp_path / 'lone')
  config = digits.get_config()
  config.update(TINY)
  train.train_and_evaluate(config, lone)

  workdir = str(tmp_path / 'run')
  first = _main(*RUN, f'--workdir={workdir}')
  lines = []
  for line in first.stderr:  # the lock is held once training is announced
    lines.append(line)
    if 'Training resnet18' in line:
      break
  # Paused, the first run still holds the lock but writes nothing, so any
  # change to the workdir while the second runs is the second's.
  first.send_signal(signal.SIGSTOP)
  try:
    before = _listing(workdir)
    second = _main(*RUN, f'--workdir={workdir}')
    _, error = second.communicate(timeout=300)
    after = _listing(workdir)
  finally:
    first.send_signal(signal.SIGCONT)
  assert second.returncode == 2, error[-3000:]
  assert error.strip().splitlines()[-1].startswith(
      f'error: {workdir} is in use by another run (host {socket.gethostname()}, pid '
      f'{first.pid}, started ')
  assert 'Traceback' not in error
  assert after == before  # it wrote nothing
  lines.extend(first.stderr)
  assert first.wait(timeout=300) == 0, ''.join(lines)[-3000:]

  final = [flat_leaves(ocp.PyTreeCheckpointer().restore(
      os.path.join(w, 'checkpoints', '44', 'default'))) for w in (lone, workdir)]
  assert final[0].keys() == final[1].keys()
  for path, value in final[0].items():
    np.testing.assert_array_equal(final[1][path], value, err_msg=path)


def test_a_lock_left_by_a_run_that_died_is_taken_over(tmp_path, caplog):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  # What a SIGKILL-ed run leaves: its holder line, and no lock (the kernel
  # released it with the process).
  (workdir / workdir_lib.LOCK_FILE).write_text('host elsewhere, pid 4242, started 2026-01-01')
  config = digits.get_config()
  config.update(TINY, num_epochs=1, warmup_epochs=0.0)
  with caplog.at_level(logging.WARNING):
    summary = train.train_and_evaluate(config, str(workdir))
  assert summary['epochs_completed'] == 1
  assert ('Took over the lock of a run that ended without releasing it (host elsewhere, '
          'pid 4242, started 2026-01-01).') in caplog.text
  assert (workdir / workdir_lib.LOCK_FILE).read_text() == ''  # released at the end


def test_a_missing_teacher_stops_before_the_data_without_touching_the_network(
    tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError(f'the data or the network was reached: {args}')
  monkeypatch.setattr(arrays, '_load_tfds', refuse)
  monkeypatch.setattr(socket.socket, 'connect', refuse)
  config = digits.get_config()
  config.update(dataset='cifar100', method='offline', teacher=str(tmp_path / 'resnet50'),
                data_dir=str(tmp_path / 'no_data'))
  with pytest.raises(errors.TeacherError, match='No teacher at'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'no_data').exists()

  # Through main.py, for the study's teacher: seconds, one line, no download.
  start = time.time()
  process = _main('--config=configs/offline_kd.py:resnet50', f'--workdir={tmp_path / "x"}',
                  f'--config.data_dir={tmp_path / "no_data"}',
                  f'--config.teacher={tmp_path / "teachers" / "resnet50"}')
  _, error = process.communicate(timeout=300)
  assert process.returncode == 2 and 'Traceback' not in error
  assert error.strip().splitlines()[-1].startswith('error: No teacher at ')
  assert 'python -m kdjax.teachers fetch resnet50' in error
  assert 'Preparing cifar100' not in error and not (tmp_path / 'no_data').exists()
  assert time.time() - start < 120


def test_a_teacher_whose_stages_cannot_pair_stops_before_the_data(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError(f'the data was reached: {args}')
  monkeypatch.setattr(arrays, '_load_tfds', refuse)
  teacher_dir = str(tmp_path / 'teacher')
  teacher = random_teacher(100)  # four stages: 32x32 to 4x4
  workdir_lib.write_model_file(teacher_dir, 'resnet18', 100, {'width': 4, 'stage_sizes': [
      1, 1, 1, 1]}, teacher.mean, teacher.std, (32, 32, 3))
  checkpoint.save_variables(teacher_dir, jax.tree.map(np.asarray, teacher.variables))
  config = digits.get_config()
  config.update(dataset='cifar100', method='at', teacher=teacher_dir, width=4,
                stage_sizes=(1, 1, 1, 1, 1))  # a fifth, 2x2 stage
  with pytest.raises(errors.ConfigError, match=r"--config.teacher=.*: method 'at' pairs "
                     r"stages, but the student's 2x2 stage has no teacher stage of its grid"):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


# Each value outside its field's domain, and what main.py says about it (floats
# as the config holds them: ml_collections casts --config.learning_rate=-1 to -1.0).
INVALID = [
    ('batch_size', '0', 'set a whole number of at least 1.'),
    ('eval_batch_size', '-5', 'set a whole number of at least 1.'),
    ('num_epochs', '0', 'set a whole number of at least 1.'),
    ('learning_rate', '-1.0', 'set a number of at least 0.'),
    ('momentum', '1.5', 'set a momentum from 0 up to, not including, 1.'),
    ('weight_decay', '-0.1', 'set a number of at least 0.'),
    ('kd_temperature', '0.0', 'set a positive number.'),
    ('kd_weight', '2.0', 'set a weight from 0 to 1'),
    ('mixup_alpha', '-0.4', 'set a number of at least 0.'),
    ('rotation_degrees', '200.0', 'set an angle from 0 to 180 degrees.'),
    ('dtype', 'float16', "set it to one of ['float32', 'bfloat16', 'auto']."),
    ('schedule', 'cosine', "set it to one of ['restarts', 'warmup_cosine', 'step']."),
    ('method', 'ofline', "Unknown method 'ofline'"),
    ('model', 'resnet19', 'name one of'),
    ('steps_per_call', '-1', 'set a whole number of at least 0.'),
    ('restart_epochs', '0.0', 'set a positive number.'),
]


def test_each_invalid_value_is_one_line_naming_the_field_and_exit_status_2(tmp_path):
  # A warm-up that does not fit its schedule is refused before any data too.
  # So is a stage count the model cannot build (RepVGG has 5 stages).
  cases = [(*case, ()) for case in INVALID] + [
      ('warmup_epochs', '0.5', 'schedule=restarts warms up for whole updates of the rate', ()),
      ('stage_sizes', '(1, 1, 1, 1)', 'repvgg_a0 has 5 stages; give 5 block counts',
       ('--config.model=repvgg_a0',))]
  assert len(cases) >= 10
  processes = [_main('--config=configs/baseline.py', f'--workdir={tmp_path / field}',
                     f'--config.{field}={value}', *extra) for field, value, _, extra in cases]
  for (field, value, fix, _), process in zip(cases, processes):
    _, error = process.communicate(timeout=600)
    lines = error.strip().splitlines()
    assert process.returncode == 2, (field, error[-2000:])
    assert lines[-1].startswith(f'error: --config.{field}={value}: '), (field, error[-2000:])
    assert fix in lines[-1] and 'Traceback' not in error, (field, lines[-1])
    assert not (tmp_path / field).exists()  # refused before the workdir was touched
