"""The self-distillation methods against float64 PyTorch transcriptions of their
reference training steps, on a small model with BatchNorm (so that each group
of a composed batch is normalized as a batch of its own, as the references
forward them): loss_fn's value, its gradient with respect to every
parameter, and the state it leaves (PS-KD's memory, DLB's last logits), on 1
device and on 4."""
import functools
import shutil

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cs_kd
from configs import dlb
from configs import ps_kd
from configs import tf_kd_reg
from configs import tf_kd_self
from configs import uskd
from kdjax import build
from kdjax import errors
from kdjax import methods
from kdjax import steps
from kdjax import teachers
from kdjax import data
from tiny import first
from tiny import flat_leaves
from tiny import read_checkpoint
from tiny import step
from tiny import tiny_config
from tiny import train_on_mock_cifar
from tiny import unmapped

torch = pytest.importorskip('torch')
F = torch.nn.functional

BATCH, FEATURES, HIDDEN, CLASSES, NUM_TRAIN = 8, 6, 5, 4, 20
INFO = data.DatasetInfo('random', 10, (32, 32, 3), (0.5, 0.4, 0.3), (0.25, 0.25, 0.3))
STEPS_PER_EPOCH = 10
RTOL, ATOL = 1e-4, 1e-6  # float32 against float64


# --- The model: linear -> BatchNorm (batch statistics) -> ReLU -> linear ------
def kdjax_apply(params, batch_stats, pixels):
  """The student in training mode, its BatchNorm over the global batch it is given."""
  h = pixels @ params['w1']
  mean = lax.pmean(jnp.mean(h, 0), steps.AXIS)
  var = lax.pmean(jnp.mean((h - mean)**2, 0), steps.AXIS)
  h = jax.nn.relu((h - mean) / jnp.sqrt(var + 1e-5))
  logits = h @ params['w2'] + params['b2']
  stages = (h[:, None, None, :], h[:, None, None, :])
  updated = {'mean': 0.9 * batch_stats['mean'] + 0.1 * mean}  # updates compose in order
  return {'logits': logits, 'feature': h, 'stage_features': stages}, updated


def torch_apply(params, pixels):
  h = pixels @ params['w1']
  h = F.relu(F.batch_norm(h, None, None, training=True, eps=1e-5))
  return h @ params['w2'] + params['b2'], h


# --- The references' training-step losses, transcribed (float64) --------------
def ps_kd_step(params, x, y, previous, epoch, epochs, alpha_T=0.8):
  """lgcnsai/PS-KD-Pytorch main.py train(): epochs from 0."""
  alpha_t = alpha_T * ((epoch + 1) / epochs)
  one_hot = torch.eye(CLASSES, dtype=torch.float64)[y]
  if epoch == 0:
    previous = one_hot
  soft_targets = ((1 - alpha_t) * one_hot) + (alpha_t * previous)
  outputs, _ = torch_apply(params, x)
  loss = (-soft_targets * torch.log_softmax(outputs, 1)).mean(0).sum()
  return loss, F.softmax(outputs, dim=1).detach()


def cs_kd_step(params, anchors, partners, y, lamda=1.0, temp=4.0):
  """alinlab/cs-kd train.py train() with -cls."""
  outputs, _ = torch_apply(params, anchors)
  loss = F.cross_entropy(outputs, y)
  with torch.no_grad():
    outputs_cls, _ = torch_apply(params, partners)
  log_p = torch.log_softmax(outputs / temp, dim=1)
  q = torch.softmax(outputs_cls.detach() / temp, dim=1)
  return loss + lamda * F.kl_div(log_p, q, reduction='sum') * temp**2 / outputs.size(0)


def dlb_step(params, new, carried, y_new, y_carried, pre_out, T=3.0, alpha=1.0):
  """Meta-knowledge-Lab/DLB dlb.py train_one_epoch(), a step with pre_data."""
  out, _ = torch_apply(params, new)
  out_pre, _ = torch_apply(params, carried)
  ce_loss = F.cross_entropy(torch.cat((out_pre, out), dim=0), torch.cat((y_carried, y_new)))
  dml_loss = F.kl_div(F.log_softmax(out_pre / T, dim=1), F.softmax(pre_out / T, dim=1),
                      reduction='batchmean') * T * T
  return ce_loss + alpha * dml_loss, out.detach()


def tf_kd_reg_step(params, x, y, alpha=0.1, T=20.0, multiplier=100.0, correct_prob=0.99):
  """Teacher-free-Knowledge-Distillation my_loss_function.py loss_kd_regularization."""
  outputs, _ = torch_apply(params, x)
  k = outputs.size(1)
  teacher_soft = torch.ones_like(outputs) * (1 - correct_prob) / (k - 1)
  teacher_soft[torch.arange(len(y)), y] = correct_prob
  reg = torch.nn.KLDivLoss()(F.log_softmax(outputs, dim=1), F.softmax(teacher_soft / T, dim=1))
  return (1 - alpha) * F.cross_entropy(outputs, y) + alpha * reg * multiplier


def uskd_step(params, x, y, alpha=0.1, beta=0.1, mu=0.1):
  """yzd-v/cls_KD: the student head's CE plus USKDLoss (its fc the weak head)."""
  from self_distillation_losses_test import uskd_reference  # pylint: disable=g-import-not-at-top
  outputs, h = torch_apply(params, x)
  weak = h @ params['weak_kernel'] + params['weak_bias']
  return F.cross_entropy(outputs, y) + uskd_reference(weak, outputs, y, alpha, beta, mu)


# --- kdjax ----------------------------------------------------------------------
def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {'w1': rng.normal(size=(FEATURES, HIDDEN)), 'w2': rng.normal(size=(HIDDEN, CLASSES)),
          'b2': rng.normal(size=CLASSES) * 0.1}


def _device_rows(x, num_devices, groups):
  """A global batch of `groups` groups laid out per device, as order.epoch_order."""
  parts = np.split(np.asarray(x), groups)
  return np.concatenate([p.reshape(num_devices, -1, *p.shape[1:]) for p in parts], axis=1)


def run_loss_fn(config, params, batch_stats, x, labels, indices, num_devices, step):
  """loss_fn of `config` over a global batch (its groups stacked) split over
  `num_devices`: (loss, gradients, new batch_stats)."""
  method = methods.get_method(config.method)
  loss_fn = methods.get_loss_fn(config, kdjax_apply, None, steps.AXIS, STEPS_PER_EPOCH)
  train_labels = np.arange(NUM_TRAIN, dtype=np.int32) % CLASSES

  def device_step(params, batch_stats, pixels, labels, indices):
    targets = jax.nn.one_hot(labels, CLASSES)
    examples = methods.Examples(indices, train_labels, jax.random.PRNGKey(0))
    (loss, (new_batch_stats, _)), grads = jax.value_and_grad(
        functools.partial(loss_fn, step=step, examples=examples), has_aux=True)(
            params, batch_stats, pixels, targets, {}, labels)
    return lax.pmean(loss, steps.AXIS), lax.pmean(grads, steps.AXIS), new_batch_stats

  f32 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float32), tree)
  rows = functools.partial(_device_rows, num_devices=num_devices, groups=method.groups)
  args = (f32(params), f32(batch_stats), rows(np.asarray(x, np.float32)),
          rows(np.asarray(labels, np.int32)), rows(np.asarray(indices, np.int32)))
  if num_devices == 1:
    out = unmapped(device_step)(args[0], args[1], *(a[0] for a in args[2:]))
    return jax.tree.map(np.asarray, out)
  replicated = lambda tree: jax.tree.map(lambda a: np.broadcast_to(a, (num_devices, *a.shape)),
                                         tree)
  mapped = jax.pmap(device_step, axis_name=steps.AXIS, devices=jax.devices()[:num_devices])
  out = mapped(replicated(args[0]), replicated(args[1]), *args[2:])
  return jax.tree.map(lambda a: np.asarray(a)[0], out)


def _torch_params(params):
  return {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True)
          for k, v in params.items()}


def _assert_grads(grads, tensors, names):
  for name in names:
    np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=RTOL, atol=ATOL,
                               err_msg=name)


def _data(seed, rows):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(rows, FEATURES)), rng.integers(0, CLASSES, rows)


NUM_DEVICES = [1, 4]


@pytest.mark.parametrize('num_devices', NUM_DEVICES)
@pytest.mark.parametrize('epoch', [0, 3])
def test_ps_kd_step_and_memory_are_the_references(num_devices, epoch):
  config = ps_kd.get_config()
  config.num_epochs = 5
  params = _params()
  x, labels = _data(1, BATCH)
  indices = np.random.default_rng(2).permutation(NUM_TRAIN)[:BATCH]
  memory = jax.nn.softmax(np.random.default_rng(3).normal(size=(NUM_TRAIN, CLASSES)))
  batch_stats = {'mean': np.zeros(HIDDEN),
                 methods.PARTS: {'pskd': {'predictions': np.asarray(memory)}}}
  loss, grads, new_stats = run_loss_fn(config, params, batch_stats, x, labels, indices,
                                       num_devices, step=epoch * STEPS_PER_EPOCH + 2)
  tensors = _torch_params(params)
  reference, probabilities = ps_kd_step(tensors, torch.tensor(x), torch.tensor(labels),
                                        torch.tensor(np.asarray(memory)[indices]), epoch, 5)
  reference.backward()
  np.testing.assert_allclose(loss, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, params)
  # Every device's examples' new softmax is written; the rest is kept.
  written = new_stats[methods.PARTS]['pskd']['predictions']
  np.testing.assert_allclose(written[indices], probabilities.numpy(), rtol=RTOL, atol=ATOL)
  others = np.setdiff1d(np.arange(NUM_TRAIN), indices)
  np.testing.assert_array_equal(written[others], np.asarray(memory, np.float32)[others])


@pytest.mark.parametrize('num_devices', NUM_DEVICES)
def test_cs_kd_step_is_the_references_with_partners_as_their_own_batch(num_devices):
  config = cs_kd.get_config()
  params = _params()
  x, labels = _data(4, 2 * BATCH)
  labels[BATCH:] = labels[:BATCH]  # each partner of its anchor's class
  loss, grads, new_stats = run_loss_fn(config, params, {'mean': np.zeros(HIDDEN)}, x, labels,
                                       np.arange(2 * BATCH), num_devices, step=5)
  tensors = _torch_params(params)
  reference = cs_kd_step(tensors, torch.tensor(x[:BATCH]), torch.tensor(x[BATCH:]),
                         torch.tensor(labels[:BATCH]))
  reference.backward()
  np.testing.assert_allclose(loss, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, params)
  # BatchNorm's running statistics are updated by the anchors, then the partners.
  h = lambda rows: x[rows] @ params['w1']
  expected = 0.9 * (0.1 * h(slice(0, BATCH)).mean(0)) + 0.1 * h(slice(BATCH, None)).mean(0)
  np.testing.assert_allclose(new_stats['mean'], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('num_devices', NUM_DEVICES)
def test_dlb_step_and_last_logits_are_the_references(num_devices):
  config = dlb.get_config()
  config.batch_size = BATCH
  params = _params()
  x, labels = _data(5, 2 * BATCH)  # new, then carried
  previous = np.random.default_rng(6).normal(size=(BATCH, CLASSES)) * 2
  batch_stats = {'mean': np.zeros(HIDDEN), methods.PARTS: {'dlb': {'logits': previous}}}
  loss, grads, new_stats = run_loss_fn(config, params, batch_stats, x, labels,
                                       np.arange(2 * BATCH), num_devices, step=7)
  tensors = _torch_params(params)
  reference, new_logits = dlb_step(tensors, torch.tensor(x[:BATCH]), torch.tensor(x[BATCH:]),
                                   torch.tensor(labels[:BATCH]), torch.tensor(labels[BATCH:]),
                                   torch.tensor(previous))
  reference.backward()
  np.testing.assert_allclose(loss, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, params)
  # The new half's logits, in global order, are the next step's targets.
  np.testing.assert_allclose(new_stats[methods.PARTS]['dlb']['logits'], new_logits.numpy(),
                             rtol=RTOL, atol=ATOL)
  # The first step of all has no previous logits: cross-entropy alone.
  first, _, _ = run_loss_fn(config, params, batch_stats, x, labels, np.arange(2 * BATCH),
                            num_devices, step=0)
  np.testing.assert_allclose(first, loss - (reference - F.cross_entropy(
      torch.cat([torch_apply(tensors, torch.tensor(x[BATCH:]))[0],
                 torch_apply(tensors, torch.tensor(x[:BATCH]))[0]]),
      torch.tensor(np.concatenate([labels[BATCH:], labels[:BATCH]])))).item(), rtol=RTOL)


@pytest.mark.parametrize('num_devices', NUM_DEVICES)
def test_tf_kd_reg_step_is_the_references(num_devices):
  params = _params()
  x, labels = _data(7, BATCH)
  loss, grads, _ = run_loss_fn(tf_kd_reg.get_config(), params, {'mean': np.zeros(HIDDEN)}, x,
                               labels, np.arange(BATCH), num_devices, step=3)
  tensors = _torch_params(params)
  reference = tf_kd_reg_step(tensors, torch.tensor(x), torch.tensor(labels))
  reference.backward()
  np.testing.assert_allclose(loss, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, params)


@pytest.mark.parametrize('num_devices', NUM_DEVICES)
def test_uskd_step_is_the_references_with_its_weak_head_learned(num_devices):
  rng = np.random.default_rng(8)
  params = {**_params(), methods.PARTS: {'uskd': {
      'kernel': rng.normal(size=(HIDDEN, CLASSES)), 'bias': rng.normal(size=CLASSES)}}}
  x, labels = _data(9, BATCH)
  loss, grads, _ = run_loss_fn(uskd.get_config(), params, {'mean': np.zeros(HIDDEN)}, x,
                               labels, np.arange(BATCH), num_devices, step=3)
  weak = params[methods.PARTS]['uskd']
  tensors = _torch_params({**_params(), 'weak_kernel': weak['kernel'],
                           'weak_bias': weak['bias']})
  reference = uskd_step(tensors, torch.tensor(x), torch.tensor(labels))
  reference.backward()
  np.testing.assert_allclose(loss, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, ('w1', 'w2', 'b2'))
  np.testing.assert_allclose(grads[methods.PARTS]['uskd']['kernel'],
                             tensors['weak_kernel'].grad.numpy(), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(grads[methods.PARTS]['uskd']['bias'],
                             tensors['weak_bias'].grad.numpy(), rtol=RTOL, atol=ATOL)


# --- Whole runs ------------------------------------------------------------------
@pytest.mark.parametrize('method', ['pskd_self', 'cskd', 'dlb'])
def test_runs_resume_bit_identically_with_their_state_out_of_the_teacher(tmp_path, method):
  # Mock CIFAR-100 (64 examples): 4 steps an epoch in calls of 2, checkpoints
  # at 4, 6 and 8 on 4 devices: resume from 6, mid-epoch.
  config = tiny_config(steps_per_call=2, checkpoint_every_steps=3, method=method)
  reference = tmp_path / 'reference'
  summary = train_on_mock_cifar(config, reference)
  assert np.isfinite(summary['final_top1'])
  saved = read_checkpoint(reference / 'checkpoints' / '8' / 'default')
  state = saved['batch_stats'].get(methods.PARTS, {})
  if method == 'pskd_self':  # every training example's last softmax
    predictions = state['pskd']['predictions']
    assert predictions.shape == (64, 100)
    np.testing.assert_allclose(predictions.sum(-1), 1, rtol=1e-5)
  if method == 'dlb':  # the last step's logits of its 16 new examples
    assert state['dlb']['logits'].shape == (16, 100) and np.any(state['dlb']['logits'])
  run = tmp_path / 'run'
  shutil.copytree(reference, run)
  shutil.rmtree(run / 'checkpoints' / '8')
  assert train_on_mock_cifar(config, run)['final_top1'] == summary['final_top1']
  final = [flat_leaves(read_checkpoint(w / 'checkpoints' / '8' / 'default'))
           for w in (reference, run)]
  for path, value in final[0].items():
    np.testing.assert_array_equal(final[1][path], value, err_msg=path)
  # The workdir teaches with the student alone.
  teacher = teachers.load(str(reference), num_classes=100)
  assert methods.PARTS not in teacher.variables['batch_stats']


@pytest.mark.parametrize('method,message', [
    ('pskd_offline', None),
    ('cskd_self', "--config.mixup_alpha=0.4: cskd's reference trains without mixup"),
    ('cskd_online', None),
])
def test_what_a_method_does_not_combine_with_is_refused_in_one_line(method, message):
  config = tiny_config(method=method, mixup_alpha=0.4 if message else 0.0)
  if method == 'pskd_offline':
    config.update(method='offline_pskd', teacher='t')
    message = r"--config.method=offline_pskd: pskd combines only with \['self'\]; drop " \
              r"\['offline'\]"
  if method == 'cskd_online':
    config.update(method='online_cskd', peers=('resnet18',))
    message = r"--config.method=online_cskd: cskd combines only with \['self'\]; drop " \
              r"\['online'\]"
  with pytest.raises(errors.ConfigError, match=message):
    build.check_config(config, 4)


@pytest.mark.parametrize('config_module,mixup', [
    (ps_kd, 0.0), (cs_kd, 0.0), (tf_kd_reg, 0.0), (dlb, 0.0), (uskd, 0.4)])
def test_each_method_steps_with_the_studys_heads_on_one_device(config_module, mixup):
  config = config_module.get_config()
  config.update({'method': f'{config.method}_self', 'width': 4, 'stage_sizes': (1, 1, 1, 1),
                 'batch_size': 8, 'mixup_alpha': mixup})
  devices = jax.devices()[:1]
  method = build.check_config(config, 1)
  run = build.build(config, INFO, 1, devices, num_train=32)
  start = run.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  rows = 8 * method.groups
  state, images, labels, key = steps.replicate((
      start, rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
      (np.arange(32) % 4).astype(np.int32), jax.random.PRNGKey(1)), devices)
  indices = np.arange(rows, dtype=np.int32)[None]
  if method.composition == 'pairs':  # partners of their anchors' classes
    indices = np.concatenate([np.arange(8), np.arange(8) + 4])[None].astype(np.int32)
  state, metrics = step(run, state, images, labels, indices, key, {})
  assert np.isfinite(first(metrics)['loss'])
  for head in ('head1', 'head2', 'head3'):  # the heads learn beside the method's term
    assert not np.array_equal(first(state).params[head]['classifier']['kernel'],
                              start.params[head]['classifier']['kernel'])


def test_tf_kd_self_is_the_references_loss_kd_self():
  """my_loss_function.py loss_kd_self with resnet18_self_teacher/params.json
  (alpha 0.95, T 6, multiplier 50), against configs/tf_kd_self.py's offline term."""
  config = tf_kd_self.get_config('runs/teacher')
  params = _params()
  x, labels = _data(10, BATCH)
  teacher_logits = np.random.default_rng(11).normal(size=(BATCH, CLASSES)) * 3
  loss_fn = methods.get_loss_fn(config, kdjax_apply, lambda variables, pixels: variables,
                                steps.AXIS, STEPS_PER_EPOCH)
  f32 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float32), tree)

  def loss(params):
    return loss_fn(params, {'mean': np.zeros(HIDDEN, np.float32)}, np.float32(x),
                   jax.nn.one_hot(labels, CLASSES), {'logits': np.float32(teacher_logits)},
                   np.int32(labels))[0]
  value, grads = unmapped(jax.value_and_grad(loss))(f32(params))
  tensors = _torch_params(params)
  outputs, _ = torch_apply(tensors, torch.tensor(x))
  alpha, temperature = 0.95, 6.0
  kl = torch.nn.KLDivLoss()(F.log_softmax(outputs / temperature, dim=1),
                            F.softmax(torch.tensor(teacher_logits) / temperature, dim=1))
  reference = ((1 - alpha) * F.cross_entropy(outputs, torch.tensor(labels))
               + alpha * kl * temperature**2 * 50.0)
  reference.backward()
  np.testing.assert_allclose(value, reference.item(), rtol=RTOL)
  _assert_grads(grads, tensors, params)
