"""Preemption and damage: killed, interrupted and corrupted runs resume exactly."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import digits
from kdjax import checkpoint
from kdjax import guards
from kdjax import report
from kdjax import train
from kdjax import workdir as workdir_lib
from tiny import assert_same_steps_up_to_rounding
from tiny import digits_teacher
from tiny import flat_leaves
from tiny import mock_tfds
from tiny import read_checkpoint
from tiny import tiny_config
from tiny import train_on_mock_cifar
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# digits: 1437 training images / 64 = 22 steps per epoch, 44 in all, a step per
# call (calls of several steps: accelerators_test); checkpoints every 2 steps,
# the last 3 kept.
OVERRIDES = {'width': 4, 'num_epochs': 2, 'log_every_steps': 1, 'checkpoint_every_steps': 2,
             'steps_per_call': 1, 'keep_checkpoints': 3}
RUN = ('--config=configs/digits.py', *(f'--config.{k}={v}' for k, v in OVERRIDES.items()))
TOTAL_STEPS = 44


def _start(workdir, num_devices=1, stderr=subprocess.PIPE, args=RUN):
  """main.py on `num_devices` devices (1: a single GPU, the common case)."""
  return subprocess.Popen([sys.executable, 'main.py', *args, f'--workdir={workdir}'],
                          cwd=ROOT, env=with_devices(num_devices), text=True, stderr=stderr)


def _signal_after(process, step, signum):
  """Sends `signum` once the run logs `step`; returns everything it logged."""
  lines = []
  for line in process.stderr:
    lines.append(line)
    if f' step {step}/{TOTAL_STEPS} ' in line:
      process.send_signal(signum)
      break
  lines.extend(process.stderr)
  process.wait(timeout=300)
  return ''.join(lines)


def _run_to_end(workdir, num_devices=1, args=RUN):
  process = _start(workdir, num_devices, args=args)
  log = process.stderr.read()
  assert process.wait(timeout=300) == 0, log[-3000:]
  assert 'Traceback' not in log and 'Event loop is closed' not in log, log[-3000:]
  return log


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def _checkpoint(workdir, step):
  return read_checkpoint(os.path.join(workdir, 'checkpoints', str(step), 'default'))


def _state_at(workdir, step):
  return flat_leaves(_checkpoint(workdir, step))


def _test_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [{k: v for k, v in json.loads(line).items() if k.startswith(('test_', 'step'))}
            for line in f]


def _files(workdir):
  """{path: (size, mtime)} of every file under workdir but the lock (which each
  run takes)."""
  return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_size,
                               os.stat(os.path.join(d, f)).st_mtime_ns)
          for d, _, files in os.walk(workdir) for f in files if f != workdir_lib.LOCK_FILE}


def _keep_up_to(source, destination, step):
  """A copy of workdir `source` as it was when `step` was its latest checkpoint."""
  shutil.copytree(source, destination)
  for later in (s for s in _steps(destination) if s > step):
    shutil.rmtree(os.path.join(destination, 'checkpoints', str(later)))


def test_on_one_device_killed_interrupted_and_finished_runs_end_bit_identical(tmp_path,
                                                                             caplog):
  # CRD, whose state holds a memory of every training example beside the
  # student's (64 negatives: a small step).
  teacher = digits_teacher(str(tmp_path / 'teacher'))
  crd = {'method': 'crd', 'teacher': teacher, 'crd_negatives': 64}
  args = (*RUN, *(f'--config.{k}={v}' for k, v in crd.items()))
  # The reference trains meanwhile, uninterrupted, also on one device.
  reference = str(tmp_path / 'reference')
  with open(tmp_path / 'reference.log', 'w') as reference_log:
    uninterrupted = _start(reference, stderr=reference_log, args=args)
    run = str(tmp_path / 'run')
    # SIGKILL mid-epoch: only complete checkpoints remain (step 10's may still have
    # been in flight, as saves are asynchronous).
    _signal_after(_start(run, args=args), 12, signal.SIGKILL)
    killed_at = max(_steps(run))
    assert killed_at in (8, 10)
    # A save cut short leaves only orbax's temporary directory, which is no checkpoint.
    partial = os.path.join(run, 'checkpoints', f'{killed_at + 2}.orbax-checkpoint-tmp-1')
    shutil.copytree(os.path.join(run, 'checkpoints', str(killed_at)), partial)
    os.remove(os.path.join(partial, 'default', '_METADATA'))
    # Ctrl-C: the current call's last step is saved, and how to resume is said;
    # the lock the SIGKILL-ed run left is taken over.
    process = _start(run, args=args)
    log = _signal_after(process, 24, signal.SIGINT)
    assert process.returncode == 128 + signal.SIGINT, log[-3000:]
    assert f'Resuming from the checkpoint at step {killed_at} ' in log, log[-3000:]
    assert 'Took over the lock of a run that ended without releasing it' in log
    assert 'batch 64 over 1 devices in 1 process(es)' in log
    interrupted = max(_steps(run))
    assert interrupted >= 24 and (f'Stopped by Ctrl-C after saving step {interrupted} in '
                                  f'{run}; rerun the same command to resume from it.') in log
    # (SIGTERM takes the same path, exiting 143: multihost_test sends it.)
    log = _run_to_end(run, args=args)
    assert f'Resuming from the checkpoint at step {interrupted} ' in log
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / 'reference.log').read_text()[-3000:]
  assert _steps(reference)[-3:] == [40, 42, 44]

  expected, got = _state_at(reference, TOTAL_STEPS), _state_at(run, TOTAL_STEPS)
  assert got.keys() == expected.keys() and len(got) > 40
  assert "['batch_stats']['method']['crd']['memory_student']" in got
  assert got["['step']"].shape == ()  # one copy, no device axis
  for path, value in expected.items():  # params, BN statistics, momentum, step
    np.testing.assert_array_equal(got[path], value, err_msg=path)
  assert _test_metrics(run) == _test_metrics(reference)

  # Rerunning the finished run only rewrites its summary.
  before = _files(run)
  summary = (tmp_path / 'run' / 'summary.json').read_text()
  log = _run_to_end(run, args=args)
  assert 'This run trained all 2 epochs already; rewriting its summary.' in log
  after = _files(run)
  assert after.keys() == before.keys()
  assert [f for f in after if after[f] != before[f]] == [os.path.join(run, 'summary.json')]
  assert (tmp_path / 'run' / 'summary.json').read_text() == summary

  # One device's checkpoint resumes on 4 devices and the reverse, saying so:
  # the same steps up to float rounding (2 steps, in which rounding stays small).
  on_four = str(tmp_path / 'on_four')
  _keep_up_to(reference, on_four, 40)
  config = digits.get_config()
  config.update({**OVERRIDES, **crd})
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, on_four)
  assert 'saved on 1 devices and resumes on 4' in caplog.text
  back_on_one = str(tmp_path / 'back_on_one')
  _keep_up_to(on_four, back_on_one, 42)  # step 42 written on 4 devices
  assert 'saved on 4 devices and resumes on 1' in _run_to_end(back_on_one, args=args)
  for got, want in (((on_four, 42), (reference, 42)), ((back_on_one, 44), (on_four, 44))):
    assert_same_steps_up_to_rounding(_checkpoint(*got), _checkpoint(*want))
  # The report reads them alike: one finished group of the four workdirs.
  (line,) = report.table_lines(report.find_runs(str(tmp_path)))
  assert (line.seeds, line.epochs) == ('4', '2')


def test_dlb_killed_on_one_device_ends_bit_identical_and_moves_to_four(tmp_path, caplog):
  # DLB: each batch carries the previous step's examples (across the epoch
  # boundary at step 22) and the state holds that step's logits.
  args = (*RUN, '--config.method=dlb')
  reference = str(tmp_path / 'reference')
  with open(tmp_path / 'reference.log', 'w') as reference_log:
    uninterrupted = _start(reference, stderr=reference_log, args=args)
    run = str(tmp_path / 'run')
    _signal_after(_start(run, args=args), 12, signal.SIGKILL)
    killed_at = max(_steps(run))
    assert killed_at in (8, 10)
    log = _run_to_end(run, args=args)
    assert f'Resuming from the checkpoint at step {killed_at} ' in log
    assert 'batch 64 + the previous step\'s over 1 devices' in log
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / 'reference.log').read_text()[-3000:]
  expected, got = _state_at(reference, TOTAL_STEPS), _state_at(run, TOTAL_STEPS)
  assert "['batch_stats']['method']['dlb']['logits']" in got
  for path, value in expected.items():
    np.testing.assert_array_equal(got[path], value, err_msg=path)
  assert _test_metrics(run) == _test_metrics(reference)
  # Its checkpoint resumes on 4 devices: the same steps up to float rounding.
  on_four = str(tmp_path / 'on_four')
  _keep_up_to(reference, on_four, 40)
  config = digits.get_config()
  config.update({**OVERRIDES, 'method': 'dlb'})
  with caplog.at_level(logging.WARNING):
    train.train_and_evaluate(config, on_four)
  assert 'saved on 1 devices and resumes on 4' in caplog.text
  assert_same_steps_up_to_rounding(_checkpoint(on_four, 42), _checkpoint(reference, 42))


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
  config = tiny_config()
  workdir = str(tmp_path / 'run')
  summary = train_on_mock_cifar(config, workdir)
  final = flat_leaves(ocp.PyTreeCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', '8', 'default')))
  # Damage every file of the last checkpoint (a disk fault, a truncated copy).
  for folder, _, files in os.walk(os.path.join(workdir, 'checkpoints', '8')):
    for name in files:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(b'\0garbage')
  with caplog.at_level(logging.WARNING):
    resumed = train_on_mock_cifar(config, workdir)
  assert ('The latest checkpoint (step 8) cannot be read' in caplog.text
          and 'resuming from step 4 instead' in caplog.text)
  assert os.path.isdir(os.path.join(workdir, checkpoint.CORRUPT, '8'))  # kept, moved aside
  # Epoch 2 was trained again from step 4 and ends where it ended before.
  again = flat_leaves(ocp.PyTreeCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', '8', 'default')))
  for path, value in final.items():
    np.testing.assert_array_equal(again[path], value, err_msg=path)
  assert resumed['final_top1'] == summary['final_top1']


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
  # No warm-up and a huge learning rate: the first update blows the weights up.
  config = tiny_config(learning_rate=1e20, warmup_epochs=0.0, checkpoint_every_steps=1,
                       steps_per_call=1)
  with pytest.raises(guards.NonFiniteLossError,
                     match=r'The loss became (nan|inf) at step 2 \(epoch 1\); training stopped '
                     r'without saving it. The last good checkpoint \(step 1\) is kept'):
    train_on_mock_cifar(config, tmp_path)
  assert _steps(str(tmp_path)) == [1]
  assert not os.path.exists(tmp_path / 'metrics.jsonl') or not (
      tmp_path / 'metrics.jsonl').read_text().strip()


def test_an_unwritable_workdir_is_refused_at_start(tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  with pytest.raises(ValueError, match=r'Cannot write to --workdir=.*file/run \(.*\); '
                     'choose a directory you can write to'):
    train.train_and_evaluate(tiny_config(), str(tmp_path / 'file' / 'run'))


def test_a_disk_without_room_for_the_checkpoints_is_refused_before_writing(tmp_path,
                                                                          monkeypatch):
  # A full disk cannot be made here; the check reads what shutil reports.
  monkeypatch.setattr(workdir_lib.shutil, 'disk_usage',
                      lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 2**16, 2**16))
  with pytest.raises(ValueError, match=r'has 0.1 MiB free, but this run keeps up to 4 '
                     r'checkpoints of .* MiB. Free some space, lower --config.keep_checkpoints'):
    train_on_mock_cifar(tiny_config(), tmp_path)
  assert os.listdir(tmp_path) == [workdir_lib.LOCK_FILE]  # the run's lock, released


def test_fresh_moves_a_run_of_another_config_aside_and_starts_over(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(tiny_config(num_epochs=5).to_json())
  (workdir / 'metrics.jsonl').write_text('{"epoch": 1, "step": 4}\n')
  with pytest.raises(ValueError, match='pass --fresh to move the old run aside'):
    train_on_mock_cifar(tiny_config(), workdir)
  with mock_tfds(64):
    summary = train.train_and_evaluate(tiny_config(), str(workdir), fresh=True)
  assert summary['epochs_completed'] == 2
  (previous,) = [p for p in tmp_path.iterdir() if p.name.startswith('run.previous-')]
  assert sorted(os.listdir(previous)) == ['config.json', 'metrics.jsonl']
  assert (previous / 'metrics.jsonl').read_text() == '{"epoch": 1, "step": 4}\n'


def test_a_second_ctrl_c_exits_at_once():
  # The loop's guard as main.py holds it: the first Ctrl-C asks for a save
  # after the current call, a second one ends the process there and then
  # (orbax's temporary directories keep a save cut short from passing for a
  # checkpoint, as the SIGKILL above shows).
  code = ('import os, signal, time\n'
          'from kdjax import guards\n'
          'with guards.PreemptionNotice() as notice:\n'
          '  os.kill(os.getpid(), signal.SIGINT)\n'
          '  print(notice.should_stop(0), notice.reason, notice.exit_status, flush=True)\n'
          '  os.kill(os.getpid(), signal.SIGINT)\n'
          '  time.sleep(60)\n'
          'print("not reached")\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)
  assert result.returncode == 128 + signal.SIGINT, result.stderr[-2000:]
  assert result.stdout.split() == ['True', 'Ctrl-C', '130']
  assert 'Second Ctrl-C: stopping now' in result.stderr
