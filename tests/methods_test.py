"""Each method's loss on a tiny student (and a tiny frozen teacher)."""
import functools
import os

import jax
import numpy as np
import pytest

from kdjax import build
from kdjax import data
from kdjax import errors
from kdjax import methods
from kdjax import steps
from tiny import first
from tiny import flat_leaves
from tiny import random_teacher
from tiny import step
from tiny import tiny_config
from tiny import unmapped

NUM_CLASSES = 10
INFO = data.DatasetInfo('random', NUM_CLASSES, (32, 32, 3), (0.5, 0.4, 0.3),
                        (0.25, 0.25, 0.3))


# Every teacher term at once, with the heads of self (baseline and self train in
# train_test, online in the symmetry test below): one compile covers them all.
TRAINED_METHODS = ['offline_feature_relation_self']
TEACHER_METHODS = ['offline', 'feature', 'relation', 'offline_self']


def _config(method, **overrides):
  """A tiny config of `method`: a peer for online methods, and for teacher
  methods a teacher name (build is given random_teacher() itself) in eval mode
  on its own input, as _teacher() computes its outputs for the formulas (the
  teacher's other modes: convert_test, train_test)."""
  terms = methods.get_method(method)
  return tiny_config(**{'method': method, 'peers': ('resnet18',) if terms.uses_peers else (),
                        'teacher': 'random' if terms.uses_teacher else '',
                        'teacher_bn': 'running', 'teacher_input': 'own', **overrides})


def _student(config):
  """(the initial state, build's Run) of `config`'s tiny student (a cohort for
  online methods), mapped over 4 devices; every config of a method starts from
  the same state."""
  return (_initial_state(config.method),
          build.build(config, INFO, 4, jax.devices()[:4], random_teacher(NUM_CLASSES)))


@functools.cache
def _initial_state(method):
  run = build.build(_config(method), INFO, 4, jax.devices()[:4], random_teacher(NUM_CLASSES))
  return run.init_state(jax.random.PRNGKey(0))


def _teacher():
  teacher = random_teacher(NUM_CLASSES)
  return teacher.variables, steps.make_teacher_apply(teacher)


def _batch(seed=0, n=16):
  """(pixels, one-hot targets, the same labels as integers)."""
  rng = np.random.default_rng(seed)
  pixels = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
  return pixels, np.eye(NUM_CLASSES, dtype=np.float32)[labels], labels


def _run_steps(run, state, teacher_variables, num_steps=2):
  """`num_steps` of `run`'s mapped steps over 4 devices on fixed random uint8 data."""
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (16 * num_steps, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, 16 * num_steps).astype(np.int32)
  st, imgs, lbls, key, tv = steps.replicate(
      (state, images, labels, jax.random.PRNGKey(2), teacher_variables), run.devices)
  losses = []
  for i in range(num_steps):
    st, metrics = step(run, st, imgs, lbls, np.arange(16 * i, 16 * (i + 1)).reshape(4, 4),
                       key, tv)
    losses.append(float(first(metrics)['loss']))
  return first(st), first(tv), losses


@pytest.mark.parametrize('method', TRAINED_METHODS)
def test_loss_is_finite_and_only_the_student_learns(method):
  config = _config(method, mixup_alpha=1.0)
  state, run = _student(config)
  teacher_variables, _ = _teacher()
  end, teacher_after, losses = _run_steps(run, state, teacher_variables)
  assert np.isfinite(losses).all()
  jax.tree.map(np.testing.assert_array_equal, teacher_after, teacher_variables)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), end.params, state.params)
  assert all(jax.tree.leaves(changed))  # every student parameter, heads included, trains
  assert int(end.step) == 2


@pytest.mark.parametrize('method', TEACHER_METHODS)
def test_no_gradient_reaches_the_teacher(method):
  config = _config(method)
  state, run = _student(config)
  teacher_variables, _ = _teacher()
  pixels, targets, labels = _batch()
  grads = unmapped(jax.grad(lambda p, bs, x, t, tv, y: run.loss_fn(p, bs, x, t, tv, y)[0],
                            argnums=4))(state.params, state.batch_stats, pixels, targets,
                                        teacher_variables, labels)
  assert not any(np.abs(g).sum() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize('method', TEACHER_METHODS)
def test_the_teacher_changes_the_loss_of_offline_methods(method):
  config = _config(method)
  state, run = _student(config)
  teacher_variables, _ = _teacher()
  loss_fn = unmapped(run.loss_fn)
  pixels, targets, labels = _batch()
  other = jax.tree.map(lambda x: x * 1.5, teacher_variables)
  values = [float(loss_fn(state.params, state.batch_stats, pixels, targets, tv, labels)[0])
            for tv in (teacher_variables, other)]
  assert abs(values[0] - values[1]) > 1e-4


def test_offline_with_kd_weight_0_and_no_mixup_equals_the_baseline_step_for_step():
  teacher_variables, _ = _teacher()
  results = []
  for method in ('baseline', 'offline'):
    config = _config(method, kd_weight=0.0, mixup_alpha=0.0)
    state, run = _student(config)
    results.append(_run_steps(run, state, teacher_variables, num_steps=3))
  (baseline, _, baseline_losses), (offline, _, offline_losses) = results
  np.testing.assert_allclose(offline_losses, baseline_losses, rtol=1e-6)
  for a, b in ((baseline.params, offline.params), (baseline.batch_stats, offline.batch_stats)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _ce(logits, targets):
  return -np.mean(np.sum(targets * _log_softmax(logits), -1))


def _kd(student, teacher, t):
  log_p = _log_softmax(teacher / t)
  return t * t * np.mean(np.sum(np.exp(log_p) * (log_p - _log_softmax(student / t)), -1))


def test_self_and_offline_self_losses_with_the_other_recipes_settings_match_their_formulas():
  # Be Your Own Teacher's and Hinton's formulas as other projects run them: KL
  # as a batch mean, heads learning the mixed target, a batch-mean feature L2.
  config = _config('self', kd_weight=0.7, kd_temperature=5.0, kd_reduction='batchmean',
                   self_kd_weight=0.2, self_kd_temperature=2.0, self_feature_weight=0.01,
                   self_feature_reduction='mean', head_labels='mixed')
  pixels, targets, labels = _batch(3)
  targets = 0.3 * targets + 0.7 * targets[::-1]  # mixed: the heads learn it too
  state, out = _outputs(config, pixels)
  teacher_variables, teacher_apply = _teacher()
  teacher_logits = np.asarray(jax.jit(teacher_apply)(teacher_variables, pixels)['logits'])
  w, beta = 0.2, 0.01
  heads = [(1 - w) * _ce(l, targets) + w * _kd(l, out['logits'], 2.0)
           + beta * np.mean(np.sum((f - out['feature'])**2, -1))
           for l, f in zip(out['head_logits'], out['head_features'])]
  # Be Your Own Teacher: (1 - w) * CE on all four classifiers, KL and L2 on the heads.
  expected_self = (1 - w) * _ce(out['logits'], targets) + sum(heads)
  # offline + self: the offline term on the final classifier, the same head terms.
  expected_offline_self = (0.3 * _ce(out['logits'], targets)
                           + 0.7 * _kd(out['logits'], teacher_logits, 5.0) + sum(heads))
  for method, expected in (('self', expected_self), ('offline_self', expected_offline_self)):
    config.update(method=method, teacher=_config(method).teacher)
    np.testing.assert_allclose(_loss_value(config, state, pixels, targets, labels),
                               expected, rtol=1e-5)


def _outputs(config, pixels):
  """(the initial state, the student's training-mode outputs on `pixels`)."""
  state, run = _student(config)
  outputs = unmapped(lambda p, bs, x: run.apply(p, bs, x, train=True)[0])(
      state.params, state.batch_stats, pixels)
  return state, jax.tree.map(np.asarray, outputs)


def _loss_value(config, state, pixels, targets, labels):
  teacher_variables, _ = _teacher()
  loss_fn = unmapped(_student(config)[1].loss_fn)
  return float(loss_fn(state.params, state.batch_stats, pixels, targets, teacher_variables,
                       labels)[0])


def test_feature_loss_matches_fitnets_formula():
  config = _config('feature', hint_weight=3.0)
  pixels, targets, labels = _batch(4)
  state, out = _outputs(config, pixels)
  teacher_variables, teacher_apply = _teacher()
  teacher_stages = jax.jit(teacher_apply)(teacher_variables, pixels)['stage_features']
  # The tiny student's stage 1 (16x16x8) is regressed to the teacher's 16x16 stage.
  assert out['hint'].shape == teacher_stages[1].shape == (16, 16, 16, 8)
  expected = _ce(out['logits'], targets) + 3.0 * np.mean(
      (out['hint'] - np.asarray(teacher_stages[1]))**2)
  np.testing.assert_allclose(_loss_value(config, state, pixels, targets, labels), expected,
                             rtol=1e-5)


def _huber(x):
  return np.mean(np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5))


def _rkd_distances(e):
  d = np.sqrt(np.maximum(((e[:, None] - e[None]) ** 2).sum(-1), 1e-12))
  np.fill_diagonal(d, 0)
  return d / d[d > 0].mean()


def _rkd_angles(e):
  diff = e[None] - e[:, None]
  unit = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-12)
  return np.einsum('ijd,ikd->ijk', unit, unit)


def test_relation_loss_matches_rkd_formula():
  config = _config('relation', rkd_distance_weight=2.0, rkd_angle_weight=5.0)
  pixels, targets, labels = _batch(5)
  state, out = _outputs(config, pixels)
  teacher_variables, teacher_apply = _teacher()
  t = np.asarray(jax.jit(teacher_apply)(teacher_variables, pixels)['feature'], np.float64)
  s = out['feature'].astype(np.float64)
  expected = (_ce(out['logits'], targets)
              + 2.0 * _huber(_rkd_distances(s) - _rkd_distances(t))
              + 5.0 * _huber(_rkd_angles(s) - _rkd_angles(t)))
  np.testing.assert_allclose(_loss_value(config, state, pixels, targets, labels), expected,
                             rtol=1e-4)


@pytest.mark.parametrize('method', ['online', 'online_self'])
def test_online_loss_matches_deep_mutual_learning_formula(method):
  config = _config(method, online_weight=0.5, online_temperature=2.0, self_kd_weight=0.2,
                   self_kd_temperature=2.0, self_feature_weight=0.01,
                   self_feature_reduction='mean')
  pixels, targets, labels = _batch(6)
  state, out = _outputs(config, pixels)
  students = [out, out['peers'][0]]
  expected = 0.0
  for me, other in (students, students[::-1]):
    # Each student: CE + w * KL(other || me); with heads, BYOT's terms and its (1 - w) on CE.
    label_weight = 0.8 if method == 'online_self' else 1.0
    expected += (label_weight * _ce(me['logits'], targets)
                 + 0.5 * _kd(me['logits'], other['logits'], 2.0))
    if method == 'online_self':
      expected += sum(0.8 * _ce(l, targets) + 0.2 * _kd(l, me['logits'], 2.0)
                      + 0.01 * np.mean(np.sum((f - me['feature'])**2, -1))
                      for l, f in zip(me['head_logits'], me['head_features']))
  assert abs(_kd(out['logits'], out['peers'][0]['logits'], 2.0)) > 1e-4  # peers differ
  np.testing.assert_allclose(_loss_value(config, state, pixels, targets, labels), expected,
                             rtol=1e-5)


def _leaves_of(member, tree):
  """{path with `member` replaced by '*': leaf} for the leaves under `member`."""
  return {path.replace(member, '*'): x for path, x in flat_leaves(tree).items()
          if member in path}


def test_mutual_learning_of_identical_students_stays_symmetric():
  # Two ResNet18s started from the same weights see the same batches: every step
  # must keep them equal, since each one's loss is the other's mirror image.
  config = _config('online', mixup_alpha=1.0)
  state, run = _student(config)
  params = dict(state.params, members_1=state.params['members_0'])
  stats = dict(state.batch_stats, members_1=state.batch_stats['members_0'])
  state = state.replace(params=params, batch_stats=stats, opt_state=state.tx.init(params))
  teacher_variables, _ = _teacher()
  end, _, losses = _run_steps(run, state, teacher_variables, num_steps=3)
  assert np.isfinite(losses).all()
  first_student, second_student = (
      _leaves_of(member, (end.params, end.batch_stats, end.opt_state))
      for member in ('members_0', 'members_1'))
  assert len(first_student) > 40 and first_student.keys() == second_student.keys()
  for path, value in first_student.items():
    np.testing.assert_array_equal(value, second_student[path], err_msg=path)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), end.params, state.params)
  assert all(jax.tree.leaves(changed))


def test_unknown_method_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown method 'ofline'.*'offline'"):
    methods.get_method('ofline')


@pytest.mark.parametrize('name,message', [
    ('self_offline', "Write method 'self_offline' as 'offline_self'"),
    ('offline_offline', "Unknown method 'offline_offline'"),
    ('feature_hint',
     "Unknown method 'feature_hint'.*'relation', 'sp', 'pkt', 'crd', 'online', 'pskd', "
     "'cskd', 'tfkdreg', 'dlb', 'uskd', 'self'"),
    ('self_dkd', "Write method 'self_dkd' as 'dkd_self'"),
])
def test_each_method_has_one_name(name, message):
  with pytest.raises(ValueError, match=message):
    methods.get_method(name)


def test_stages_pair_by_grid_deepest_first():
  # RepVGG-A0's stages (two at 32x32) against ResNet18's.
  repvgg = [(1, 32, 32, 48), (1, 32, 32, 48), (1, 16, 16, 96), (1, 8, 8, 192), (1, 4, 4, 1280)]
  resnet18 = [(1, 32, 32, 64), (1, 16, 16, 128), (1, 8, 8, 256), (1, 4, 4, 512)]
  assert methods.paired_stages(resnet18, repvgg) == [1, 2, 3, 4]
  assert methods.paired_stages(resnet18, resnet18) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match=r"student's 2x2 stage has no teacher stage of its grid"):
    methods.paired_stages([*resnet18, (1, 2, 2, 512)], repvgg)


def test_a_teacher_whose_stages_cannot_pair_is_refused_before_the_run():
  # A five-stage student reaches a 2x2 grid that the four-stage teacher lacks.
  config = _config('at', stage_sizes=(1, 1, 1, 1, 1))
  with pytest.raises(errors.ConfigError, match=r"teacher.*'at' pairs stages, but the "
                     r"student's 2x2 stage has no teacher stage"):
    build.build(config, INFO, 4, jax.devices()[:4], random_teacher(NUM_CLASSES))


def test_a_hint_stage_the_teacher_has_no_grid_for_is_a_clear_error():
  teacher_shapes = [(8, 32, 32, 256), (8, 16, 16, 512), (8, 8, 8, 1024)]
  assert methods.hint_source((16, 16), teacher_shapes) == 1
  with pytest.raises(ValueError, match=r'No teacher stage has the 4x4 grid.*hint_stage'):
    methods.hint_source((4, 4), teacher_shapes)


def test_the_methods_table_and_the_readmes_list_name_every_registered_term():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, 'docs', 'methods.md')) as f:
    text = f.read()
  table = text[text.index('| method | config | loss (per student) |'):]
  table = table[:table.index('\n\n')]
  rows = {line.split('`')[1] for line in table.splitlines()[2:]}
  assert set(methods.TERMS) | {methods.BASELINE} <= rows
  assert rows <= set(methods.TERMS) | {methods.BASELINE, 'offline_self'}
  with open(os.path.join(root, 'README.md')) as f:
    readme = f.read()
  glance = readme[readme.index('## Methods at a glance'):readme.index('## Read more')]
  listed = {line.split('`')[1] for line in glance.splitlines() if line.startswith('- `')}
  assert listed == set(methods.TERMS)


def test_logit_standardization_without_a_logit_term_is_refused():
  with pytest.raises(errors.ConfigError, match=r"logit_standardization=True: method 'sp' has "
                     'no offline or dkd term'):
    build.check_config(_config('sp', logit_standardization=True), 4)
  build.check_config(_config('dkd_self', logit_standardization=True), 4)
