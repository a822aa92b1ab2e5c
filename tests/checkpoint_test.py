import os

import jax
import numpy as np
import pytest

from kdjax import checkpoint
from kdjax import steps
from tiny import read_checkpoint
from tiny import save_with_a_device_axis


def _state(step, value):
  return steps.TrainState(step=np.asarray(step, np.int32), apply_fn=None, tx=None, opt_state=(),
                          params={'w': np.full((3,), value, np.float32)},
                          batch_stats={'mean': np.full((2,), -value, np.float32)})


def _save(manager, step, top1, num_devices=4):
  """Saves step `step`'s state (values `step`) replicated over `num_devices`
  devices, as training holds it."""
  devices = jax.devices()[:num_devices]
  checkpoint.save(manager, step, steps.replicate(_state(step, step), devices), devices, top1)


@pytest.mark.parametrize('num_devices', [1, 4])
def test_keeps_the_last_two_and_the_best_and_restores_the_latest(tmp_path, num_devices):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=2)
  for step, top1 in ((1, 50.0), (2, 90.0), (3, 60.0), (4, 70.0), (5, 65.0)):
    _save(manager, step, top1, num_devices)
  manager.wait_until_finished()
  # One copy without a device axis, whatever the device count.
  saved = read_checkpoint(tmp_path / 'checkpoints' / '5' / 'default')
  assert saved['params']['w'].shape == (3,) and saved['step'].shape == ()
  assert checkpoint.saved_device_count(manager, 5) == num_devices
  assert sorted(manager.all_steps()) == [2, 4, 5]
  assert manager.best_step() == 2
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4', '5']

  # A new manager (a restarted process) finds and restores the latest.
  _, restored = checkpoint.resume(str(tmp_path), 2, _state(0, 0))
  assert int(restored.step) == 5
  np.testing.assert_array_equal(restored.params['w'], np.full((3,), 5, np.float32))
  np.testing.assert_array_equal(restored.batch_stats['mean'], np.full((2,), -5, np.float32))


def test_resume_without_checkpoints_returns_the_given_state(tmp_path):
  state = _state(0, 1)
  assert checkpoint.resume(str(tmp_path), 2, state)[1] is state


def test_mid_epoch_saves_are_kept_only_while_among_the_latest(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=2)
  for step, top1 in ((1, None), (2, 80.0), (3, None), (4, None), (5, 60.0), (6, None)):
    _save(manager, step, top1)
  manager.wait_until_finished()
  assert sorted(manager.all_steps()) == [2, 5, 6] and manager.best_step() == 2


def _damage(directory):
  for folder, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(b'\0garbage')


def test_when_the_two_latest_checkpoints_are_unreadable_nothing_is_moved(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=3)
  for step in (1, 2, 3):
    _save(manager, step, 50.0)
  manager.wait_until_finished()
  _damage(tmp_path / 'checkpoints' / '2')
  _damage(tmp_path / 'checkpoints' / '3')
  with pytest.raises(ValueError, match=r'Neither of the last two checkpoints .* \(steps 3 '
                     r'and 2\) can be read \(.*\). Move them away'):
    checkpoint.resume(str(tmp_path), 3, _state(0, 0))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2', '3']
  assert not os.listdir(tmp_path / checkpoint.CORRUPT)


def test_an_only_checkpoint_that_is_unreadable_is_a_clear_error(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=2)
  _save(manager, 1, 50.0)
  manager.wait_until_finished()
  _damage(tmp_path / 'checkpoints' / '1')
  with pytest.raises(ValueError, match='The only checkpoint in .* cannot be read'):
    checkpoint.resume(str(tmp_path), 2, _state(0, 0))
  assert os.listdir(tmp_path / 'checkpoints') == ['1']


def test_restore_best_variables_reads_only_the_requested_collections(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=1)
  for step, top1 in ((1, 50.0), (2, 90.0), (3, 60.0)):
    _save(manager, step, top1)
  manager.wait_until_finished()
  abstract = {'params': {'w': np.zeros(3, np.float32)},
              'batch_stats': {'mean': np.zeros(2, np.float32)}}
  step, variables = checkpoint.restore_best_variables(str(tmp_path), abstract)
  assert step == 2
  assert set(variables) == {'params', 'batch_stats'}  # not the optimizer state
  np.testing.assert_array_equal(variables['params']['w'], np.full((3,), 2, np.float32))
  np.testing.assert_array_equal(variables['batch_stats']['mean'], np.full((2,), -2, np.float32))


def test_a_one_device_checkpoint_with_a_device_axis_resumes_and_teaches(tmp_path):
  save_with_a_device_axis(tmp_path, 3, _state(3, 7), 50.0)
  _, restored = checkpoint.resume(str(tmp_path), 2, _state(0, 0))
  assert int(restored.step) == 3 and restored.step.shape == ()
  np.testing.assert_array_equal(restored.params['w'], np.full((3,), 7, np.float32))
  step, variables = checkpoint.restore_best_variables(
      str(tmp_path), {'params': {'w': np.zeros(3, np.float32)}})
  assert step == 3
  np.testing.assert_array_equal(variables['params']['w'], np.full((3,), 7, np.float32))


def test_a_checkpoint_of_another_model_is_refused_naming_the_array(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep_last=2)
  _save(manager, 1, 50.0)
  _save(manager, 2, 50.0)
  manager.wait_until_finished()
  other = _state(0, 0).replace(params={'w': np.zeros((4,), np.float32)})
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=r"\['w'\] has shape \(3,\) there but \(4,\) in this one"):
    checkpoint.resume(str(tmp_path), 2, other)
  # Not taken for damage: nothing is moved aside.
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']
  assert not (tmp_path / checkpoint.CORRUPT).exists()
