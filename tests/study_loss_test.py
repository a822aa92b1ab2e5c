"""Each row's loss has the study's gradient: kdjax's loss_fn against a PyTorch
transcription of the study's src/module.py and src/utils/support_utils.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import baseline
from configs import offline_kd
from configs import offline_kd_no_mixup
from configs import offline_self_kd
from configs import self_kd
from kdjax import convert
from kdjax import data
from kdjax import methods
from kdjax import steps
from kdjax import teachers
from tiny import unmapped

torch = pytest.importorskip('torch')
from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)
nn = torch.nn
F = torch.nn.functional

BATCH, CLASSES, FEATURES = 8, 100, 16


# --- The study's code, transcribed (float64) -------------------------------------
def mixup_criterion(criterion, pred, y_a, y_b, lam):
  return lam * criterion(pred, y_a) + (1 - lam) * criterion(pred, y_b)


def kd_loss_function(output, target_output, temperature):
  output = output / temperature
  output_log_softmax = torch.log_softmax(output, dim=1)
  return -torch.mean(torch.sum(output_log_softmax * target_output, dim=1))


def feature_loss_function(feature, target_feature):
  loss = (feature - target_feature)**2 * ((feature > 0) | (target_feature > 0)).double()
  return torch.abs(loss).sum()


def study_loss(module, conf, mixup, preds, middle_outputs, final_feature, middle_features,
               teacher_outputs, labels, targets_b, lam):
  """compute_loss_and_acc(batch, 'train') of the study's Lightning modules, from
  the network's outputs; `mixup` is criterion_conf.use_mixup."""
  criterion = nn.CrossEntropyLoss()
  if module == 'ResNetModule':
    return criterion(preds, labels)
  if mixup:
    loss = mixup_criterion(criterion, preds, labels, targets_b, lam)
  else:
    loss = criterion(preds, labels)
  t = conf['temperature']
  if module == 'KDResNetModule':
    loss_kd = nn.KLDivLoss()(F.log_softmax(preds / t, dim=1),
                             F.softmax(teacher_outputs / t, dim=1))
    return (1 - conf['teacher_lambda']) * loss + conf['teacher_lambda'] * t * t * loss_kd
  middle_losses = [criterion(m, labels) for m in middle_outputs]
  temp4 = torch.softmax(preds / t, dim=1)
  soft = [kd_loss_function(m, temp4.detach(), t) * t**2 for m in middle_outputs]
  if module == 'TeacherKDResNetModule':
    temp = torch.softmax(teacher_outputs / t, dim=1)
    soft.append(kd_loss_function(preds, temp.detach(), t) * t**2)
  features = [feature_loss_function(m, final_feature.detach()) for m in middle_features]
  return ((1 - conf['self_alpha']) * (loss + sum(middle_losses))
          + conf['self_alpha'] * sum(soft) + conf['self_beta'] * sum(features))


# The study's configs/modules/*.yaml, per row.
ROWS = {
    'baseline': (baseline.get_config(), 'ResNetModule', {}, False),
    'offline': (offline_kd.get_config('repvgg_a0'), 'KDResNetModule',
                {'teacher_lambda': 0.6, 'temperature': 10}, True),
    'offline_no_mixup': (offline_kd_no_mixup.get_config('repvgg_a0'), 'KDResNetModule',
                         {'teacher_lambda': 0.6, 'temperature': 10}, False),
    'self': (self_kd.get_config(), 'SelfKDResNetModule',
             {'self_alpha': 0.1, 'self_beta': 1e-6, 'temperature': 3}, True),
    'offline_self': (offline_self_kd.get_config('repvgg_a0'), 'TeacherKDResNetModule',
                     {'self_alpha': 0.1, 'self_beta': 1e-6, 'temperature': 10}, True),
}


def _outputs(seed):
  rng = np.random.default_rng(seed)
  # Post-ReLU pooled features, logits of the spread a trained net gives.
  return {'logits': 4 * rng.normal(size=(BATCH, CLASSES)),
          'head_logits': tuple(4 * rng.normal(size=(BATCH, CLASSES)) for _ in range(3)),
          'feature': np.abs(rng.normal(size=(BATCH, FEATURES))),
          'head_features': tuple(np.abs(rng.normal(size=(BATCH, FEATURES)))
                                 for _ in range(3))}


@pytest.mark.parametrize('row', sorted(ROWS))
@pytest.mark.parametrize('lam', [0.3, 1.0])
def test_each_rows_loss_has_the_studys_gradient(row, lam):
  config, module, conf, mixup = ROWS[row]
  if lam != 1.0 and not mixup:
    pytest.skip('this row does not mix')
  assert bool(config.mixup_alpha) == mixup
  rng = np.random.default_rng(1)
  outputs = _outputs(0)
  teacher_logits = 4 * rng.normal(size=(BATCH, CLASSES))
  labels = rng.integers(0, CLASSES, BATCH)
  partners = rng.integers(0, CLASSES, BATCH)
  eye = np.eye(CLASSES)
  targets = lam * eye[labels] + (1 - lam) * eye[partners]

  # kdjax: a student whose outputs are its parameters, so the loss's gradient
  # with respect to the parameters is its gradient with respect to the outputs.
  loss_fn = methods.get_loss_fn(
      config, lambda params, batch_stats, pixels: (params, batch_stats),
      lambda variables, pixels: {'logits': variables['logits']})
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), outputs)
  grads = jax.grad(lambda p: loss_fn(p, {}, None, jnp.asarray(targets, jnp.float32),
                                     {'logits': jnp.asarray(teacher_logits, jnp.float32)},
                                     jnp.asarray(labels))[0])(params)

  tensors = jax.tree.map(lambda x: torch.tensor(x, requires_grad=True), outputs)
  loss = study_loss(module, conf, mixup, tensors['logits'], tensors['head_logits'],
                    tensors['feature'], tensors['head_features'],
                    torch.tensor(teacher_logits), torch.tensor(labels),
                    torch.tensor(partners), lam)
  loss.backward()
  uses_heads = module in ('SelfKDResNetModule', 'TeacherKDResNetModule')
  for path, (got, tensor) in zip(
      ['logits', 'head_logits', 'head_features', 'feature'],
      [(grads[k], tensors[k]) for k in ('logits', 'head_logits', 'head_features', 'feature')]):
    for g, t in zip(jax.tree.leaves(got), jax.tree.leaves(tensor)):
      expected = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
      if path != 'feature' and (uses_heads or not path.startswith('head')):
        assert np.abs(expected).max() > 1e-6, path  # a real gradient to compare
      np.testing.assert_allclose(np.asarray(g), expected, rtol=2e-4,
                                 atol=2e-6 * np.abs(expected).max() + 1e-9, err_msg=path)


@pytest.mark.parametrize('row', ['offline', 'offline_self'])
def test_with_a_batch_statistics_teacher_the_loss_has_the_studys_gradient(row, tmp_path):
  # The study's teacher as it trained: RepVGG-A0 in PyTorch's train mode on the
  # student's mixed batch; kdjax's converted teacher in teacher_bn='batch'.
  config, module, conf, mixup = ROWS[row]
  assert (config.teacher_bn, config.teacher_input) == ('batch', 'student')
  torch.manual_seed(0)
  reference = torch_models.randomize_batchnorm(torch_models.build('repvgg_a0'))
  convert.write_teacher(str(tmp_path), 'repvgg_a0', convert.torch_to_flax(
      'repvgg_a0', {k: v.numpy() for k, v in reference.state_dict().items()}),
                        (0.5,) * 3, (0.25,) * 3)
  teacher = teachers.load(str(tmp_path), bn=config.teacher_bn)
  mean, std = np.asarray(data.CIFAR100_MEAN), np.asarray(data.CIFAR100_STD)
  rng = np.random.default_rng(2)
  pixels = rng.uniform(size=(BATCH, 32, 32, 3)).astype(np.float32)
  outputs = _outputs(0)
  labels = rng.integers(0, CLASSES, BATCH)
  partners = rng.integers(0, CLASSES, BATCH)
  eye = np.eye(CLASSES)
  targets = 0.3 * eye[labels] + 0.7 * eye[partners]

  loss_fn = methods.get_loss_fn(
      config, lambda params, batch_stats, pixels: (params, batch_stats),
      steps.make_teacher_apply(teacher, config.teacher_bn, (mean, std)), steps.AXIS)
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), outputs)
  grads = unmapped(jax.grad(lambda p, x, t, v, y: loss_fn(p, {}, x, t, v, y)[0]))(
      params, pixels, jnp.asarray(targets, jnp.float32), teacher.variables,
      jnp.asarray(labels))

  tensors = jax.tree.map(lambda x: torch.tensor(x, requires_grad=True), outputs)
  with torch.no_grad():
    teacher_logits = reference.train()(torch.from_numpy(
        ((pixels - mean) / std).transpose(0, 3, 1, 2)).float()).double()
  study_loss(module, conf, mixup, tensors['logits'], tensors['head_logits'],
             tensors['feature'], tensors['head_features'], teacher_logits,
             torch.tensor(labels), torch.tensor(partners), 0.3).backward()
  expected = tensors['logits'].grad.numpy()
  assert np.abs(expected).max() > 1e-6
  np.testing.assert_allclose(np.asarray(grads['logits']), expected, rtol=2e-4,
                             atol=2e-6 * np.abs(expected).max() + 1e-9)
