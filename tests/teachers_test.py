"""Teachers: any kdjax workdir teaches, its own way; unusable ones fail clearly."""
import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from kdjax import build
from kdjax import data
from kdjax import errors
from kdjax import evaluate
from kdjax import models
from kdjax import steps
from kdjax import teachers
from kdjax import train
from kdjax import workdir as workdir_lib
from tiny import mock_tfds
from tiny import random_teacher
from tiny import save_with_a_device_axis
from tiny import tiny_config
from tiny import train_on_mock_cifar



def _best_epoch_record(workdir):
  """The record of the best epoch by test top-1; of tied epochs, the last, as
  orbax's best-checkpoint policy keeps it."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return max(reversed(records), key=lambda r: r['test_top1'])


def _full_state(workdir, step):
  path = os.path.join(workdir, 'checkpoints', str(step), 'default')
  return ocp.PyTreeCheckpointer().restore(path)


def test_a_kdjax_workdir_teaches_with_its_best_checkpoint(cifar_teacher):
  teacher = teachers.load(cifar_teacher)
  best = _best_epoch_record(cifar_teacher)
  assert f'checkpoint step {best["step"]}' in teacher.description
  saved = _full_state(cifar_teacher, best['step'])
  jax.tree.map(np.testing.assert_array_equal, teacher.variables,
               {'params': saved['params'], 'batch_stats': saved['batch_stats']})
  assert teacher.num_classes == 100
  with mock_tfds(64):
    dataset = data.load_dataset('cifar100')
  np.testing.assert_allclose(teacher.mean, dataset.mean, rtol=1e-6)
  np.testing.assert_allclose(teacher.std, dataset.std, rtol=1e-6)


def test_a_self_distillation_run_teaches_with_its_final_classifier(tmp_path):
  workdir = tmp_path / 'self'
  train_on_mock_cifar(tiny_config(method='self', num_epochs=1, warmup_epochs=0.5), workdir)
  teacher = teachers.load(str(workdir))
  saved = _full_state(str(workdir), 4)
  assert not any(k.startswith('head') for k in teacher.variables['params'])
  assert any(k.startswith('head') for k in saved['params'])
  pixels = np.random.default_rng(0).uniform(size=(5, 32, 32, 3)).astype(np.float32)
  student = build.create_model(tiny_config(method='self'), 100)
  apply = steps.make_apply(student, teacher.mean, teacher.std)
  expected = apply(saved['params'], saved['batch_stats'], pixels, train=False)[0]['logits']
  got = steps.make_apply(teacher.model, teacher.mean, teacher.std)(
      teacher.variables['params'], teacher.variables['batch_stats'], pixels,
      train=False)[0]
  assert 'head_logits' not in got
  np.testing.assert_allclose(got['logits'], expected, rtol=1e-5, atol=1e-5)


def test_resnet18_and_repvgg_learn_together_and_the_cohort_teaches_with_resnet18(tmp_path):
  # Deep Mutual Learning across architectures: one pmapped step trains both,
  # one checkpoint holds both, evaluation reports both.
  workdir = tmp_path / 'online'
  # Students share stage_sizes; RepVGG has five stages, so the tiny ResNet gets five too.
  config = tiny_config(method='online', peers=('repvgg_a0',), stage_sizes=(1, 1, 1, 1, 1),
                       mixup_alpha=1.0, num_epochs=1, warmup_epochs=0.5)
  summary = train_on_mock_cifar(config, workdir)
  assert 0 <= summary['final_top1'] <= 100 and 0 <= summary['final_peer1_top1'] <= 100
  saved = _full_state(str(workdir), 4)
  assert set(saved['params']) == {'members_0', 'members_1'}
  assert 'stage5_block1' in saved['params']['members_0']  # ResNet names stages from 1
  assert 'rbr_dense_conv' in saved['params']['members_1']['stage4_block1']  # RepVGG from 0
  with open(workdir / workdir_lib.MODEL_FILE) as f:
    spec = json.load(f)
  assert [name for name, _ in spec['kwargs']['members']] == ['resnet18', 'repvgg_a0']

  teacher = teachers.load(str(workdir))
  pixels = np.random.default_rng(0).uniform(size=(5, 32, 32, 3)).astype(np.float32)
  resnet = models.get_model('resnet18', 100, width=4, stage_sizes=(1, 1, 1, 1, 1))
  expected = steps.make_apply(resnet, teacher.mean, teacher.std)(
      saved['params']['members_0'], saved['batch_stats']['members_0'], pixels,
      train=False)[0]['logits']
  got = steps.make_teacher_apply(teacher)(teacher.variables, pixels)['logits']
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_corrupt_teacher_files_are_clear_errors(cifar_teacher, tmp_path):
  broken_spec = tmp_path / 'spec'
  broken_spec.mkdir()
  (broken_spec / workdir_lib.MODEL_FILE).write_text('{"model": "resnet18", ')
  with pytest.raises(errors.TeacherError, match=r'Cannot read .*model.json: .* Re-create'):
    teachers.load(str(broken_spec))
  broken_weights = tmp_path / 'weights'
  shutil.copytree(cifar_teacher, broken_weights)
  for folder, _, files in os.walk(broken_weights / 'checkpoints'):
    for name in files:
      (pathlib.Path(folder) / name).write_bytes(b'\0garbage')
  with pytest.raises(errors.TeacherError, match=r"Cannot restore the teacher in '.*weights'"):
    teachers.load(str(broken_weights))


def test_a_one_device_workdir_of_an_earlier_kdjax_teaches(tmp_path):
  # Earlier kdjax saved a one-device run with the pmap's device axis on every leaf.
  source = random_teacher()
  workdir_lib.write_model_file(str(tmp_path), 'resnet18', 10,
                            {'width': 4, 'stage_sizes': [1, 1, 1, 1]}, source.mean, source.std,
                            (32, 32, 3))
  save_with_a_device_axis(tmp_path, 3, source.variables, 9.0)
  teacher = teachers.load(str(tmp_path), num_classes=10)
  pixels = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(
      steps.make_teacher_apply(teacher)(teacher.variables, pixels)['logits'],
      steps.make_teacher_apply(source)(source.variables, pixels)['logits'])


def test_missing_or_incomplete_teachers_are_clear_errors(tmp_path):
  with pytest.raises(errors.TeacherError, match=r"No teacher at '.*nowhere'.*--config.teacher"):
    teachers.load(str(tmp_path / 'nowhere'))
  with pytest.raises(errors.TeacherError, match='has no model.json'):
    teachers.load(str(tmp_path))
  workdir_lib.write_model_file(str(tmp_path), 'resnet18', 100, {'width': 4}, (0.5,) * 3, (0.2,) * 3,
                               (32, 32, 3))
  with pytest.raises(errors.TeacherError, match='holds no complete checkpoint'):
    teachers.load(str(tmp_path))


def test_offline_run_logs_the_teachers_accuracy_and_checkpoints_only_the_student(
    cifar_teacher, tmp_path):
  config = tiny_config(method='offline', teacher=cifar_teacher, mixup_alpha=1.0,
                       num_epochs=1, warmup_epochs=0.5)
  summary = train_on_mock_cifar(config, tmp_path)
  # The teacher, evaluated by the student's run on the same test split, scores
  # exactly what its own run recorded for that checkpoint.
  assert summary['teacher_top1'] == _best_epoch_record(cifar_teacher)['test_top1']
  assert summary['epochs_completed'] == 1 and np.isfinite(summary['final_top1'])
  saved = _full_state(str(tmp_path), 4)
  student = build.create_model(config, 100)
  abstract = jax.eval_shape(lambda: student.init(jax.random.PRNGKey(0),
                                                 np.zeros((1, 32, 32, 3)), train=False))
  assert jax.tree.structure(saved['params']) == jax.tree.structure(abstract['params'])
  # The optimizer holds momentum for the student's parameters only (plus scalar counts).
  assert sum(x.size for x in jax.tree.leaves(saved['opt_state']) if x.ndim) == sum(
      x.size for x in jax.tree.leaves(abstract['params']))


def test_a_teacher_for_another_class_count_is_refused_before_writing(cifar_teacher, tmp_path):
  config = tiny_config(method='offline', teacher=cifar_teacher, dataset='digits')
  with pytest.raises(errors.TeacherError, match='predicts 100 classes, but digits has 10; use a teacher trained on digits'):
    train.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before the workdir is locked


@pytest.mark.parametrize('method,teacher,peers,message', [
    ('offline', '', (), "--config.teacher=: method 'offline' learns from a teacher; set it"),
    ('relation_self', '', (), "--config.teacher=: method 'relation_self' learns from a teacher"),
    ('baseline', 'runs/x', (), "--config.teacher=runs/x: method 'baseline' uses no teacher"),
    ('online', '', (), "--config.peers=: method 'online' trains students together; set it"),
    ('self', '', ('resnet18',), "--config.peers=resnet18: method 'self' trains one student"),
])
def test_a_teacher_or_peer_setting_that_does_not_fit_the_method_is_refused(
    method, teacher, peers, message, tmp_path):
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(tiny_config(method=method, teacher=teacher, peers=peers),
                             str(tmp_path))
  assert not os.listdir(tmp_path)


def test_a_hint_stage_the_student_lacks_is_refused_before_writing(cifar_teacher, tmp_path):
  config = tiny_config(method='feature', teacher=cifar_teacher, hint_stage=4)
  with pytest.raises(ValueError, match=r'--config.hint_stage=4: resnet18 has stages 0 to 3'):
    train_on_mock_cifar(config, tmp_path)
  assert not os.listdir(tmp_path)  # refused before the workdir is locked


def test_evaluate_reports_the_teachers_test_accuracy(cifar_teacher):
  with mock_tfds(64):
    result = evaluate.evaluate_teacher_directory(cifar_teacher, batch_size=30)
  assert result['count'] == 64
  assert result['top1'] == _best_epoch_record(cifar_teacher)['test_top1']


def test_the_teacher_computes_in_its_own_dtype_and_form(cifar_teacher):
  info = data.describe('cifar100')
  for dtype, teacher_dtype, expected in (('bfloat16', 'float32', jnp.float32),
                                         ('float32', 'bfloat16', jnp.bfloat16)):
    config = tiny_config(method='offline', teacher=cifar_teacher, dtype=dtype,
                         teacher_dtype=teacher_dtype)
    assert build.load_teacher(config, info).model.dtype == expected
  # RepVGG keeps its three branches for batch statistics and is fused for running ones.
  kwargs = {'width': 4, 'stage_sizes': (1, 1, 1, 1, 1)}
  unfused = teachers.random_teacher('repvgg_a0', 10, bn='batch', **kwargs)
  fused = teachers.random_teacher('repvgg_a0', 10, bn='running', **kwargs)
  assert 'rbr_dense_conv' in unfused.variables['params']['stage0_block1']
  assert not fused.variables['params']['stage0_block1'].keys() - {'rbr_reparam'}
  with pytest.raises(ValueError, match="is fused .* load it with teachers.load"):
    steps.make_teacher_apply(fused, bn='batch')
  with pytest.raises(errors.TeacherError, match=r"one of \['running', 'batch'\], not 'eval'"):
    teachers.load(cifar_teacher, bn='eval')
