"""Each method's loss on a tiny student (and a tiny frozen teacher)."""
import functools

import jax
import numpy as np
import pytest

from kdjax import methods
from kdjax import models
from kdjax import optim
from kdjax import train
from tiny import first
from tiny import tiny_config

NUM_CLASSES = 10
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.25, 0.3)


def _student(config):
  return _student_with(heads=methods.get_method(config.method).uses_heads)


@functools.cache
def _student_with(heads):
  # No BN axis name, so the loss can also be called outside a pmap.
  model = models.get_model('resnet18', NUM_CLASSES, width=4, stage_sizes=(1, 1, 1, 1),
                           heads=heads)
  tx = optim.create_optimizer(optim.create_schedule(0.1, 4, 2, 1.0), 0.9, 5e-4)
  state = train.create_train_state(jax.random.PRNGKey(0), model, tx, (32, 32, 3))
  return state, train.make_apply(model, MEAN, STD)


@functools.cache
def _teacher():
  """A tiny ResNet with random weights and its own normalization."""
  model = models.get_model('resnet18', num_classes=NUM_CLASSES, width=4,
                           stage_sizes=(1, 1, 1, 1))
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(7), np.zeros((1, 32, 32, 3)))
  apply = train.make_apply(model, (0.4, 0.4, 0.4), (0.2, 0.3, 0.2))
  return variables, lambda v, pixels: apply(v['params'], v['batch_stats'], pixels,
                                            train=False)[0]


def _loss_fn(config, apply, teacher_apply):
  return methods.get_loss_fn(config, lambda *a: apply(*a, train=True), teacher_apply)


def _batch(seed=0, n=16):
  rng = np.random.default_rng(seed)
  pixels = rng.uniform(size=(n, 32, 32, 3)).astype(np.float32)
  targets = np.eye(NUM_CLASSES, dtype=np.float32)[rng.integers(0, NUM_CLASSES, n)]
  return pixels, targets


def _run_steps(config, state, loss_fn, teacher_variables, num_steps=2):
  """`num_steps` pmapped steps over 4 devices on fixed random uint8 data."""
  devices = jax.devices()[:4]
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (16 * num_steps, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, 16 * num_steps).astype(np.int32)
  p_step = train.pmap_train_step(loss_fn, augment=True, mixup_alpha=config.mixup_alpha,
                                 num_classes=NUM_CLASSES, devices=devices)
  st, imgs, lbls, key, tv = train.replicate(
      (state, images, labels, jax.random.PRNGKey(2), teacher_variables), devices)
  losses = []
  for i in range(num_steps):
    st, metrics = p_step(st, imgs, lbls, np.arange(16 * i, 16 * (i + 1)).reshape(4, 4), key, tv)
    losses.append(float(first(metrics)['loss']))
  return first(st), first(tv), losses


@pytest.mark.parametrize('method', sorted(methods.METHODS))
def test_loss_is_finite_and_only_the_student_learns(method):
  config = tiny_config(method=method, mixup_alpha=1.0)
  state, apply = _student(config)
  teacher_variables, teacher_apply = _teacher()
  uses_teacher = methods.get_method(method).uses_teacher
  loss_fn = _loss_fn(config, apply, teacher_apply if uses_teacher else None)
  end, teacher_after, losses = _run_steps(config, state, loss_fn, teacher_variables)
  assert np.isfinite(losses).all()
  jax.tree.map(np.testing.assert_array_equal, teacher_after, teacher_variables)
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), end.params, state.params)
  assert all(jax.tree.leaves(changed))  # every student parameter, heads included, trains
  assert int(end.step) == 2


@pytest.mark.parametrize('method', ['offline', 'offline_self'])
def test_no_gradient_reaches_the_teacher(method):
  config = tiny_config(method=method)
  state, apply = _student(config)
  teacher_variables, teacher_apply = _teacher()
  loss_fn = _loss_fn(config, apply, teacher_apply)
  pixels, targets = _batch()
  grads = jax.jit(jax.grad(lambda tv: loss_fn(state.params, state.batch_stats, pixels,
                                              targets, tv)[0]))(teacher_variables)
  assert not any(np.abs(g).sum() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize('method', ['offline', 'offline_self'])
def test_the_teacher_changes_the_loss_of_offline_methods(method):
  config = tiny_config(method=method)
  state, apply = _student(config)
  teacher_variables, teacher_apply = _teacher()
  loss_fn = jax.jit(_loss_fn(config, apply, teacher_apply))
  pixels, targets = _batch()
  other = jax.tree.map(lambda x: x * 1.5, teacher_variables)
  values = [float(loss_fn(state.params, state.batch_stats, pixels, targets, tv)[0])
            for tv in (teacher_variables, other)]
  assert abs(values[0] - values[1]) > 1e-4


def test_offline_with_kd_weight_0_and_no_mixup_equals_the_baseline_step_for_step():
  teacher_variables, teacher_apply = _teacher()
  results = []
  for method in ('baseline', 'offline'):
    config = tiny_config(method=method, kd_weight=0.0, mixup_alpha=0.0)
    state, apply = _student(config)
    loss_fn = _loss_fn(config, apply, teacher_apply if method == 'offline' else None)
    results.append(_run_steps(config, state, loss_fn, teacher_variables, num_steps=3))
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


def test_self_and_offline_self_losses_match_the_reference_formulas():
  config = tiny_config(method='self', kd_weight=0.7, kd_temperature=5.0,
                       self_kd_weight=0.2, self_kd_temperature=2.0, self_feature_weight=0.01)
  state, apply = _student(config)
  teacher_variables, teacher_apply = _teacher()
  pixels, targets = _batch(3)
  out = jax.tree.map(np.asarray, jax.jit(apply, static_argnames='train')(
      state.params, state.batch_stats, pixels, train=True)[0])
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
    config.method = method
    loss_fn = jax.jit(_loss_fn(config, apply, teacher_apply))
    value = loss_fn(state.params, state.batch_stats, pixels, targets, teacher_variables)[0]
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_unknown_method_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown method 'ofline'.*'offline'"):
    methods.get_method('ofline')
