"""Methods that train parts of their own (VID, OFD, ReviewKD, CRD) in whole runs:
their parameters and CRD's memory in the train state, checkpointed and
resumed bit for bit, out of what the workdir teaches and is evaluated with."""
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from kdjax import build
from kdjax import data
from kdjax import errors
from kdjax import evaluate
from kdjax import methods
from kdjax import teachers
from tiny import flat_leaves
from tiny import mock_tfds
from tiny import tiny_config
from tiny import train_on_mock_cifar

PARTS = ('vid', 'ofd', 'reviewkd', 'crd')


def _checkpoint(workdir, step):
  return ocp.PyTreeCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(step), 'default'))


def test_parts_train_resume_bit_identically_and_stay_out_of_the_teacher(
    tmp_path, cifar_teacher, caplog):
  # 4 steps an epoch in calls of 2, checkpoints at 4, 6 and 8: resume from 6.
  # All four parts at once, with the study's heads and mixup.
  config = tiny_config(steps_per_call=2, checkpoint_every_steps=3,
                       method='_'.join((*PARTS, 'self')), teacher=cifar_teacher,
                       mixup_alpha=0.4, crd_negatives=32)
  reference = tmp_path / 'reference'
  with caplog.at_level(logging.INFO):
    summary = train_on_mock_cifar(config, reference)
  assert np.isfinite(summary['final_top1'])
  # Every part is in the train state, the student's parameters beside them.
  init_key, _ = jax.random.split(jax.random.PRNGKey(config.seed))  # as train's
  start = build.build(config, data.describe('cifar100'), 4, jax.devices()[:4],
                      teachers.load(cifar_teacher, bn='batch'), num_train=64).init_state(init_key)
  student_params, part_params = methods.split_parts(start.params)
  assert sorted(part_params) == sorted(PARTS)
  count = lambda tree: sum(x.size for x in jax.tree.leaves(tree)) / 1e6
  assert (f'Parameters: student {count(student_params):.2f} M + method '
          f'{count(part_params):.2f} M.') in caplog.text
  saved = _checkpoint(reference, 8)
  memory = saved['batch_stats'][methods.PARTS]['crd']
  assert memory['memory_student'].shape == (64, 128)
  assert (memory['normalizers'] > 0).all()  # set by the first step
  # Each epoch sees all 64 examples, and each one's rows moved.
  assert not np.isclose(memory['memory_student'],
                        start.batch_stats[methods.PARTS]['crd']['memory_student']).all(-1).any()
  for name in PARTS:  # every part learns
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(saved['params'][methods.PARTS][name]),
        jax.tree.leaves(part_params[name])))
  # The optimizer holds momentum for the parts too.
  assert sum(x.size for x in jax.tree.leaves(saved['opt_state']) if x.ndim) == sum(
      x.size for x in jax.tree.leaves(saved['params']))

  run = tmp_path / 'run'
  shutil.copytree(reference, run)
  shutil.rmtree(run / 'checkpoints' / '8')
  assert train_on_mock_cifar(config, run)['final_top1'] == summary['final_top1']
  final = [flat_leaves(_checkpoint(w, 8)) for w in (reference, run)]
  assert any('memory_teacher' in path for path in final[0])
  for path, value in final[0].items():
    np.testing.assert_array_equal(final[1][path], value, err_msg=path)

  # The workdir teaches and is evaluated with the student alone.
  teacher = teachers.load(str(reference), num_classes=100)
  assert methods.PARTS not in teacher.variables['params']
  assert methods.PARTS not in teacher.variables['batch_stats']
  with mock_tfds(64):
    result = evaluate.evaluate_teacher_directory(str(reference), batch_size=16)
  assert result['count'] == 64
  np.testing.assert_allclose(result['top1'], summary['best_top1'], rtol=1e-6)


def test_parts_and_peers_are_refused_together():
  config = tiny_config(method='vid_online', teacher='t', peers=('resnet18',))
  with pytest.raises(errors.ConfigError, match=r"--config.method=vid_online: the terms "
                     r"that train a module of their own \(vid\) train one student"):
    build.check_config(config, 4)
