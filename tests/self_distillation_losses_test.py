"""The self-distillation losses against float64 PyTorch transcriptions of their
reference code: value and gradient with respect to every trained input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import losses

torch = pytest.importorskip('torch')
F = torch.nn.functional

BATCH, CLASSES = 8, 10
RTOL, ATOL = 2e-5, 1e-7  # float32 against float64


# --- The references, transcribed (float64) --------------------------------------
# lgcnsai/PS-KD-Pytorch loss/pskd_loss.py and main.py's soft targets
def ps_kd_reference(output, targets_one_hot, previous, alpha_t):
  soft_targets = ((1 - alpha_t) * targets_one_hot) + (alpha_t * previous)
  log_probs = torch.nn.LogSoftmax(dim=1)(output)
  return (-soft_targets * log_probs).mean(0).sum()


# alinlab/cs-kd train.py KDLoss (DLB's dlb.py computes the same with reduction
# "batchmean" on the carried half)
def cs_kd_reference(inputs, target, temp_factor):
  log_p = torch.log_softmax(inputs / temp_factor, dim=1)
  q = torch.softmax(target / temp_factor, dim=1)
  return torch.nn.KLDivLoss(reduction='sum')(log_p, q) * temp_factor**2 / inputs.size(0)


def dlb_reference(out_pre, pre_out, temperature):
  return F.kl_div(F.log_softmax(out_pre / temperature, dim=1),
                  F.softmax(pre_out.detach() / temperature, dim=1),
                  reduction='batchmean') * temperature * temperature


# yuanli2333/Teacher-free-Knowledge-Distillation my_loss_function.py
# loss_kd_regularization, its regularization term alone
def tf_kd_reg_reference(outputs, labels, correct_prob, temperature, multiplier):
  k = outputs.size(1)
  teacher_soft = torch.ones_like(outputs) * (1 - correct_prob) / (k - 1)
  for i in range(outputs.shape[0]):
    teacher_soft[i, labels[i]] = correct_prob
  return torch.nn.KLDivLoss()(F.log_softmax(outputs, dim=1),
                              F.softmax(teacher_soft / temperature, dim=1)) * multiplier


# yzd-v/cls_KD mmcls/models/dis_losses/uskd.py USKDLoss.forward, the fc applied
# outside (its output is `w_fc`)
def uskd_reference(w_fc, logit_s, gt_label, alpha, beta, mu):
  zipf = 1 / torch.arange(1, logit_s.shape[1] + 1, dtype=torch.float64)
  if len(gt_label.size()) > 1:
    value, label = torch.sort(gt_label, descending=True, dim=-1)
    value, label = value[:, :2], label[:, :2]
  else:
    label = gt_label.view(len(gt_label), 1)
    value = torch.ones_like(label)
  n, c = logit_s.shape
  s_i = F.softmax(logit_s, dim=1)
  s_t = torch.gather(s_i, 1, label)
  p_t = s_t**2
  p_t = p_t + value - p_t.mean(0, True)
  p_t[value == 0] = 0
  p_t = p_t.detach()
  s_i = torch.nn.LogSoftmax(dim=1)(logit_s)
  s_t = torch.gather(s_i, 1, label)
  loss_t = -(p_t * s_t).sum(dim=1).mean()
  if len(gt_label.size()) > 1:
    target = gt_label * 0.9 + 0.1 * torch.ones_like(logit_s) / c
  else:
    target = torch.zeros_like(logit_s).scatter_(1, label, 0.9) + 0.1 * torch.ones_like(
        logit_s) / c
  w_i = torch.nn.LogSoftmax(dim=1)(w_fc)
  loss_weak = -(mu * target * w_i).sum(dim=1).mean()
  w_i = F.softmax(w_fc, dim=1)
  w_t = torch.gather(w_i, 1, label)
  rank = w_i / (1 - w_t.sum(1, True) + 1e-6) + s_i / (1 - s_t.sum(1, True) + 1e-6)
  _, rank = torch.sort(rank, descending=True, dim=-1)
  z_i = zipf.repeat(n, 1)
  ids_sort = torch.argsort(rank)
  z_i = torch.gather(z_i, dim=1, index=ids_sort)
  mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
  logit_s = logit_s[mask].reshape(n, -1)
  ns_i = torch.nn.LogSoftmax(dim=1)(logit_s)
  nz_i = z_i[mask].reshape(n, -1)
  nz_i = nz_i / nz_i.sum(dim=1, keepdim=True)
  nz_i = nz_i.detach()
  loss_non = -(nz_i * ns_i).sum(dim=1).mean()
  return alpha * loss_t + beta * loss_non + loss_weak


# --------------------------------------------------------------------------------
def _inputs(seed=0, scale=3.0):
  rng = np.random.default_rng(seed)
  logits = (scale * rng.normal(size=(BATCH, CLASSES))).astype(np.float32)
  other = (scale * rng.normal(size=(BATCH, CLASSES))).astype(np.float32)
  labels = rng.integers(0, CLASSES, BATCH).astype(np.int32)
  return logits, other, labels


def _torch(x, grad=False):
  return torch.tensor(np.asarray(x), dtype=torch.float64, requires_grad=grad)


def _compare(jax_loss, torch_loss, *arrays):
  """Values, and gradients with respect to every array, agree."""
  value, grads = jax.value_and_grad(jax_loss, argnums=tuple(range(len(arrays))))(
      *map(jnp.asarray, arrays))
  tensors = [_torch(a, grad=True) for a in arrays]
  reference = torch_loss(*tensors)
  reference.backward()
  np.testing.assert_allclose(value, reference.item(), rtol=RTOL)
  for g, t in zip(grads, tensors):
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=RTOL, atol=ATOL)
  return float(value)


@pytest.mark.parametrize('alpha', [0.0, 0.35, 0.8])
def test_ps_kd_is_the_references_soft_cross_entropy(alpha):
  logits, other, labels = _inputs()
  previous = np.asarray(jax.nn.softmax(other))
  one_hot = np.eye(CLASSES, dtype=np.float32)[labels]
  _compare(lambda z: losses.ps_kd(z, one_hot, previous, alpha),
           lambda z: ps_kd_reference(z, _torch(one_hot), _torch(previous), alpha), logits)
  # The previous predictions are a target: no gradient reaches them.
  grad = jax.grad(lambda p: losses.ps_kd(logits, one_hot, p, alpha))(previous)
  assert not np.any(np.asarray(grad))


@pytest.mark.parametrize('temperature', [1.0, 4.0])
def test_cs_kd_and_dlb_are_their_references_kl(temperature):
  logits, other, _ = _inputs(1)
  _compare(lambda z: losses.cs_kd(z, other, temperature),
           lambda z: cs_kd_reference(z, _torch(other), temperature), logits)
  _compare(lambda z: losses.dlb(z, other, temperature),
           lambda z: dlb_reference(z, _torch(other), temperature), logits)
  for loss in (losses.cs_kd, losses.dlb):
    assert not np.any(np.asarray(jax.grad(lambda o: loss(logits, o, temperature))(other)))


def test_tf_kd_reg_is_the_references_term_and_its_target_nearly_uniform():
  logits, _, labels = _inputs(2)
  value = _compare(lambda z: losses.tf_kd_reg(z, labels, 0.99, 20.0, 100.0),
                   lambda z: tf_kd_reg_reference(z, torch.tensor(labels), 0.99, 20.0, 100.0),
                   logits)
  assert value > 0
  # The target is softmax(probabilities / 20): the label's share is
  # e^(0.99/20) / (e^(0.99/20) + 9 e^(0.0011/20)) = 10.45 %, the others' 9.95 %.
  share = np.exp(0.99 / 20) / (np.exp(0.99 / 20) + 9 * np.exp(0.01 / 9 / 20))
  assert 0.1044 < share < 0.1046
  target = np.array([share] + [(1 - share) / 9] * 9)
  # Against uniform predictions the term is 100 x the mean over classes of
  # target x log(target / 0.1).
  at_uniform = float(losses.tf_kd_reg(np.zeros((1, CLASSES), np.float32), np.zeros(1, np.int32),
                                      0.99, 20.0, 100.0))
  np.testing.assert_allclose(at_uniform, 100 * np.mean(target * np.log(target / 0.1)),
                             rtol=1e-3)  # a float32 difference of nearly equal logs


@pytest.mark.parametrize('branch', ['labels', 'mixed'])
def test_uskd_is_the_references_term(branch):
  logits, weak, labels = _inputs(3)
  if branch == 'labels':
    gt, gt_torch = labels, torch.tensor(labels, dtype=torch.int64)
  else:
    # Mixup of each example with another of a different class: two targets.
    partner = (labels + 1 + np.arange(BATCH) % (CLASSES - 1)) % CLASSES
    gt = (0.3 * np.eye(CLASSES)[labels] + 0.7 * np.eye(CLASSES)[partner]).astype(np.float32)
    gt_torch = _torch(gt)
  _compare(lambda z, w: losses.uskd(z, w, jnp.asarray(gt), 0.1, 0.1, 0.1),
           lambda z, w: uskd_reference(w, z, gt_torch, 0.1, 0.1, 0.1), logits, weak)


def test_uskd_weights_each_part_as_the_reference():
  logits, weak, labels = _inputs(4)
  for alpha, beta, mu in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)):
    got = float(losses.uskd(logits, weak, labels, alpha, beta, mu))
    want = uskd_reference(_torch(weak), _torch(logits), torch.tensor(labels, dtype=torch.int64),
                          alpha, beta, mu).item()
    np.testing.assert_allclose(got, want, rtol=RTOL)
    assert got != 0
