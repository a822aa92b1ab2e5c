"""Method zoo part 3's losses against float64 PyTorch transcriptions of their
reference code: the value and the gradient with respect to every trained
input, both sides in float64."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import losses

torch = pytest.importorskip('torch')
F = torch.nn.functional

BATCH, CLASSES = 8, 10
RTOL = 1e-9  # float64 on both sides


# --- The references, transcribed (float64) --------------------------------------
# zkxufo/TTM distiller_zoo/ttm.py and wttm.py
def ttm_reference(y_s, y_t, l, weighted):
  p_s = F.log_softmax(y_s, dim=1)
  p_t = torch.pow(torch.softmax(y_t, dim=1), l)
  norm = torch.sum(p_t, dim=1)
  p_t = p_t / norm.unsqueeze(1)
  kl = torch.sum(F.kl_div(p_s, p_t, reduction='none'), dim=1)
  return torch.mean(norm * kl) if weighted else torch.mean(kl)


# yzd-v/cls_KD mmcls/models/dis_losses/nkd.py (October 2023)
def nkd_reference(logit_s, logit_t, gt_label, temp, gamma):
  label = gt_label.view(len(gt_label), 1)
  n, _ = logit_s.shape
  s_i = F.log_softmax(logit_s, dim=1)
  t_i = F.softmax(logit_t, dim=1)
  s_t = torch.gather(s_i, 1, label)
  t_t = torch.gather(t_i, 1, label).detach()
  loss_t = -(t_t * s_t).mean()
  mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
  logit_s = logit_s[mask].reshape(n, -1)
  logit_t = logit_t[mask].reshape(n, -1)
  s_i = F.log_softmax(logit_s / temp, dim=1)
  t_i = F.softmax(logit_t / temp, dim=1)
  loss_non = (t_i * s_i).sum(dim=1).mean()
  return loss_t - gamma * temp**2 * loss_non


# zhengli97/CTKD models/temp_global.py, train_student.py CosineDecay,
# distiller_zoo/KD.py DistillKL, helper/loops.py's temperature
class GradientReversalFunction(torch.autograd.Function):
  @staticmethod
  def forward(ctx, x, lambda_):
    ctx.lambda_ = lambda_
    return x.clone()

  @staticmethod
  def backward(ctx, grads):
    return grads.new_tensor(ctx.lambda_) * grads, None


def ctkd_reference(y_s, y_t, global_t, lambda_, t_start=1.0, t_end=20.0):
  temp = t_start + t_end * torch.sigmoid(GradientReversalFunction.apply(global_t, lambda_))
  return torch.nn.KLDivLoss(reduction='batchmean')(
      F.log_softmax(y_s / temp, dim=1), F.softmax(y_t / temp, dim=1)) * temp * temp


def cosine_decay_reference(i, max_value, min_value, num_loops):
  i = min(max(i, 0), num_loops)
  return (math.cos(i * math.pi / num_loops) + 1.0) * 0.5 * (max_value - min_value) + min_value


# Jin-Ying/Multi-Level-Logit-Distillation mdistiller/distillers/KD_ours.py,
# its forward_train's distillation terms (losses_dict without loss_ce), KD weight 1
def kd_loss(s, t, temperature):
  return F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1),
                  reduction='none').sum(1).mean() * temperature**2


def cc_loss(s, t, temperature):
  ps, pt = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
  return ((torch.mm(pt.T, pt) - torch.mm(ps.T, ps))**2).sum() / t.shape[1]


def bc_loss(s, t, temperature):
  ps, pt = F.softmax(s / temperature, dim=1), F.softmax(t / temperature, dim=1)
  return ((torch.mm(pt, pt.T) - torch.mm(ps, ps.T))**2).sum() / t.shape[0]


def mlkd_reference(sw, ss, tw, ts, temperature):
  confidence, _ = F.softmax(tw, dim=1).max(dim=1)
  mask = confidence.le(np.percentile(confidence.numpy().flatten(), 50)).bool()
  class_confidence = torch.sum(F.softmax(tw, dim=1), dim=0)
  class_mask = class_confidence.le(np.percentile(class_confidence.numpy().flatten(), 50))
  temps = (temperature, 3.0, 5.0, 2.0, 6.0)
  kd_weak = sum((kd_loss(sw, tw, t) * mask).mean() for t in temps)
  kd_strong = (sum(kd_loss(ss, ts, t) for t in temps[:3])
               + sum(kd_loss(sw, tw, t) for t in temps[3:]))
  cc_weak = sum((cc_loss(sw, tw, t) * class_mask).mean() for t in temps)
  bc_weak = sum((bc_loss(sw, tw, t) * mask).mean() for t in temps)
  return kd_weak + kd_strong + cc_weak + bc_weak


# shicaiwei123/SDD-CVPR2024 mdistiller/models/imagenet/utils.py SPP (applied to
# the position logits: the fc commutes with the pool), distillers/KD.py
# sdd_kd_loss and distillers/SDD_DKD.py multi_dkd, their weights written as
# the masks there compute them
def spp_reference(position_logits, scales):  # [B, C, H, W] -> [B, C, regions]
  x4 = F.adaptive_avg_pool2d(position_logits, (4, 4))
  pooled = {4: x4, 2: F.adaptive_avg_pool2d(x4, (2, 2)), 1: F.adaptive_avg_pool2d(x4, (1, 1))}
  return torch.cat([torch.flatten(pooled[s], start_dim=2) for s in scales], dim=2)


def sdd_weights_reference(out_t, target, target_r):
  out_t_predict = torch.argmax(out_t, dim=1)
  mask_true, mask_false = out_t_predict == target_r, out_t_predict != target_r
  global_prediction = out_t_predict[0:len(target)]
  true_repeat = (global_prediction == target).repeat(len(target_r) // len(target))
  false_repeat = (global_prediction != target).repeat(len(target_r) // len(target))
  gt_lw = mask_false.clone()
  gt_lw[false_repeat] = False
  gt_lw[0:len(target)] = False
  gw_lt = mask_true.clone()
  gw_lt[true_repeat] = False
  gw_lt[0:len(target)] = False
  gw_lw = mask_false.clone()
  gw_lw[true_repeat] = False
  gt_lt = mask_true.clone()
  gt_lt[false_repeat] = False
  index = torch.zeros(len(target_r), dtype=torch.float64)
  index[gw_lw] = 1.0
  index[gt_lt] = 1.0
  index[gw_lt] = 2.0
  index[gt_lw] = 2.0
  return index


def _flat_regions(multi):  # [B, C, N] -> [N * B, C]
  multi = multi.permute(2, 0, 1)
  return torch.reshape(multi, (multi.shape[0] * multi.shape[1], multi.shape[2]))


def sdd_reference(patch_s, patch_t, temperature, target):
  out_s, out_t = _flat_regions(patch_s), _flat_regions(patch_t)
  target_r = target.repeat(patch_t.shape[2])
  loss_kd = F.kl_div(F.log_softmax(out_s / temperature, dim=1),
                     F.softmax(out_t / temperature, dim=1), reduction='none') * temperature**2
  loss_kd = torch.sum(loss_kd, dim=1)
  return torch.sum(loss_kd * sdd_weights_reference(out_t, target, target_r)) / target_r.shape[0]


def sdd_dkd_reference(patch_s, patch_t, target, alpha, beta, temperature):
  out_s, out_t = _flat_regions(patch_s), _flat_regions(patch_t)
  target_r = target.repeat(patch_t.shape[2])
  gt_mask = torch.zeros_like(out_s).scatter_(1, target_r.unsqueeze(1), 1).bool()
  other_mask = ~gt_mask
  cat = lambda t: torch.cat([(t * gt_mask).sum(1, keepdims=True),
                             (t * other_mask).sum(1, keepdims=True)], dim=1)
  pred_student = cat(F.softmax(out_s / temperature, dim=1))
  pred_teacher = cat(F.softmax(out_t / temperature, dim=1))
  tckd = torch.sum(F.kl_div(torch.log(pred_student), pred_teacher, reduction='none')
                   * temperature**2 / target_r.shape[0], dim=1)
  nckd = torch.sum(F.kl_div(F.log_softmax(out_s / temperature - 1000.0 * gt_mask, dim=1),
                            F.softmax(out_t / temperature - 1000.0 * gt_mask, dim=1),
                            reduction='none') * temperature**2 / target_r.shape[0], dim=1)
  loss = alpha * tckd + beta * nckd
  return torch.sum(loss * sdd_weights_reference(out_t, target, target_r))


# jingyang2017/KD_SRRL distiller_zoo/AIN.py statm_loss and
# train_imagenet_distillation.py's F.mse_loss(net_t(feat_s=...), pred_t), on
# the connected student map and the teacher's last map
def srd_reference(feat_s, feat_t, kernel, bias, pred_t):
  x = feat_s.view(feat_s.size(0), feat_s.size(1), -1).mean(dim=2)
  y = feat_t.view(feat_t.size(0), feat_t.size(1), -1).mean(dim=2)
  pred_sc = x @ kernel + bias
  return (x - y).pow(2).mean(1).mean(), F.mse_loss(pred_sc, pred_t)


# megvii-research/mdistiller mdistiller/distillers/KDSVD.py, with the teacher's
# singular vectors' signs made canonical (largest-|entry| positive)
def removenan(x):
  return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def svd_reference(feat, n, canonical=False):
  size = feat.shape
  x = feat.view(size[0], size[1] * size[2], size[3])
  u, s, v = torch.svd(x)
  u, s, v = removenan(u), removenan(s), removenan(v)
  if canonical:
    largest = torch.gather(v, 1, v.abs().argmax(1, keepdim=True))
    v = v * torch.where(largest < 0, -1.0, 1.0).to(v.dtype)
  return F.normalize(u[:, :, :n], dim=1), F.normalize(s[:, :n], dim=1), F.normalize(
      v[:, :, :n], dim=1)


def align_rsv(a, b):
  cosine = torch.matmul(a.transpose(-2, -1), b)
  max_abs_cosine, _ = torch.max(torch.abs(cosine), 1, keepdim=True)
  mask = torch.where(torch.eq(max_abs_cosine, torch.abs(cosine)), torch.sign(cosine),
                     torch.zeros_like(cosine))
  return torch.matmul(a, mask), b


def kdsvd_reference(g_s, g_t, k):
  v_sb = v_tb = None
  losses_ = []
  for i, f_s, f_t in zip(range(len(g_s)), g_s, g_t):
    _, s_t, v_t = svd_reference(f_t, k, canonical=True)
    _, _, v_s = svd_reference(f_s, k + 3)
    v_s, v_t = align_rsv(v_s, v_t)
    s_t = s_t.unsqueeze(1)
    v_t, v_s = v_t * s_t, v_s * s_t
    if i > 0:
      s_rbf = torch.exp(-(v_s.unsqueeze(2) - v_sb.unsqueeze(1)).pow(2) / 8)
      t_rbf = torch.exp(-(v_t.unsqueeze(2) - v_tb.unsqueeze(1)).pow(2) / 8)
      l2loss = (s_rbf - t_rbf.detach()).pow(2)
      losses_.append(torch.where(torch.isfinite(l2loss), l2loss, torch.zeros_like(l2loss)).sum())
    v_tb, v_sb = v_t, v_s
  return sum(l / g_s[0].shape[0] for l in losses_)


# --- The comparison ---------------------------------------------------------------
def _rng(seed):
  return np.random.default_rng(seed)


def _logits(seed, shape=(BATCH, CLASSES), scale=2.0):
  return _rng(seed).normal(size=shape) * scale


def _compare(kdjax_fn, torch_fn, trained, fixed=()):
  """kdjax_fn(*trained, *fixed) and torch_fn(...) (NumPy float64 in, the
  torch side as tensors) agree in value and in gradient w.r.t. `trained`."""
  tensors = [torch.tensor(x, requires_grad=True) for x in trained]
  want = torch_fn(*tensors, *[torch.tensor(x) if isinstance(x, np.ndarray) else x
                              for x in fixed])
  want.backward()
  with jax.enable_x64(True):
    value, grads = jax.value_and_grad(
        lambda args: kdjax_fn(*args, *fixed))([jnp.asarray(x) for x in trained])
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(float(value), want.item(), rtol=RTOL)
    for got, t in zip(grads, tensors):
      np.testing.assert_allclose(np.asarray(got), t.grad.numpy(), rtol=1e-7,
                                 atol=1e-10 * max(1.0, t.grad.abs().max().item()))
  return want.item()


@pytest.mark.parametrize('weighted', [False, True])
def test_ttm_and_wttm_equal_the_reference(weighted):
  fn = losses.wttm if weighted else losses.ttm
  _compare(fn, lambda s, t, l: ttm_reference(s, t, l, weighted),
           [_logits(1)], (_logits(2), 0.2 if weighted else 0.1))


@pytest.mark.parametrize('temperature,gamma', [(3.0, 3.5), (1.0, 1.5)])
def test_nkd_equals_the_fixed_reference(temperature, gamma):
  labels = np.arange(BATCH) % CLASSES
  _compare(lambda s, t, y: losses.nkd(s, t, jnp.asarray(y), temperature, gamma),
           lambda s, t, y: nkd_reference(s, t, y, temperature, gamma),
           [_logits(3)], (_logits(4), labels))


def test_ctkd_reverses_the_temperatures_gradient_by_lambda():
  lam = cosine_decay_reference(3, 0.0, -1.0, 10)
  _compare(lambda s, p, t: losses.ctkd(s, t, p[0], lam),
           lambda s, p, t: ctkd_reference(s, t, p, lam),
           [_logits(5), np.array([1.0])], (_logits(6),))
  # The plain gradient, for the sign: lam < 0 reverses it.
  with jax.enable_x64(True):
    grad = lambda lam_: jax.grad(losses.ctkd, 2)(_logits(5), _logits(6), 1.0, lam_)
    np.testing.assert_allclose(float(grad(lam)), lam * float(grad(1.0)), rtol=1e-12)


def test_ctkd_lambda_is_the_references_cosine_decay_from_epoch_1():
  for num_epochs in (10, 5):
    got = [float(losses.ctkd_lambda(e, num_epochs)) for e in range(0, 14)]
    want = [cosine_decay_reference(e, 0.0, -1.0, num_epochs) for e in range(0, 14)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  assert float(losses.ctkd_lambda(1, 10)) == pytest.approx(-0.02447, abs=1e-5)


@pytest.mark.parametrize('batch', [BATCH, 7])  # an even and an odd median
def test_mlkd_equals_the_reference(batch):
  shape = (batch, CLASSES)
  _compare(lambda sw, ss, tw, ts: losses.mlkd(sw, ss, tw, ts, (4.0, 3.0, 5.0, 2.0, 6.0)),
           lambda sw, ss, tw, ts: mlkd_reference(sw, ss, tw, ts, 4.0),
           [_logits(7, shape), _logits(8, shape)], (_logits(9, shape), _logits(10, shape)))


def _position_logits(seed, grid):
  return _rng(seed).normal(size=(BATCH, grid, grid, CLASSES)) * 2


def _nchw(x):
  return x.permute(0, 3, 1, 2)


@pytest.mark.parametrize('grid,scales', [(4, (1, 2, 4)), (7, (1, 2)), (7, (1, 2, 4))])
def test_sdd_equals_the_reference_on_cifar_and_imagenet_grids(grid, scales):
  labels = np.arange(BATCH) % CLASSES
  student, teacher = _position_logits(11, grid), _position_logits(12, grid)
  # A teacher right about some labels globally and locally, wrong about others.
  teacher[:4, ..., :] += 4 * np.eye(CLASSES)[labels[:4]][:, None, None]
  value = _compare(
      lambda s, t, y: losses.sdd(s, t, jnp.asarray(y), 4.0, scales),
      lambda s, t, y: sdd_reference(spp_reference(_nchw(s), scales),
                                    spp_reference(_nchw(t), scales), 4.0, y),
      [student], (teacher, labels))
  assert value > 0
  _compare(
      lambda s, t, y: losses.sdd_dkd(s, t, jnp.asarray(y), 1.0, 8.0, 4.0, scales),
      lambda s, t, y: sdd_dkd_reference(spp_reference(_nchw(s), scales),
                                        spp_reference(_nchw(t), scales), y, 1.0, 8.0, 4.0),
      [student], (teacher, labels))


def test_sdd_weights_only_the_regions_where_local_and_global_disagree_twice():
  labels = np.zeros(BATCH, int)
  teacher = np.zeros((BATCH, 4, 4, CLASSES))
  teacher[..., 0] = 1.0  # right everywhere ...
  teacher[0, :2, :2, 0], teacher[0, :2, :2, 1] = 0.0, 2.0  # ... but one corner of example 0
  student = _position_logits(13, 4)
  out_t = _flat_regions(spp_reference(_nchw(torch.tensor(teacher)), (1, 2)))
  want = sdd_weights_reference(out_t, torch.tensor(labels), torch.tensor(labels).repeat(5))
  # Regions are scale by scale, each region's rows together: example 0's
  # top-left 2x2 region is row BATCH (the global region's rows come first).
  assert want.tolist().count(2.0) == 1 and want[BATCH].item() == 2.0
  with jax.enable_x64(True):
    weighted = float(losses.sdd(student, teacher, labels, 4.0, (1, 2)))
    teacher_right = np.array(teacher)
    teacher_right[0, :2, :2, 0] = 9.0  # now right there too: every weight 1
    plain = float(losses.sdd(student, teacher_right, labels, 4.0, (1, 2)))
  assert weighted != pytest.approx(plain)


def test_srd_equals_the_reference():
  rng = _rng(14)
  feat_s, feat_t = rng.normal(size=(BATCH, 3, 3, 6)), rng.normal(size=(BATCH, 3, 3, 6))
  kernel, bias, pred_t = rng.normal(size=(6, CLASSES)), rng.normal(size=CLASSES), _logits(15)
  for part in (0, 1):
    _compare(lambda s, t, k, b, p: losses.srd(s.mean((1, 2)), t.mean((1, 2)), k, b, p)[part],
             lambda s, t, k, b, p: srd_reference(_nchw(s), _nchw(t), k, b, p)[part],
             [feat_s], (feat_t, kernel, bias, pred_t))


STUDENT_STAGES = ((8, 8, 4), (4, 4, 8), (2, 2, 16))
TEACHER_STAGES = ((8, 8, 6), (4, 4, 5), (2, 2, 12))


def _stages(seed, shapes):
  rng = _rng(seed)
  return [np.abs(rng.normal(size=(BATCH, *shape))) for shape in shapes]


@pytest.mark.parametrize('k', [1, 2])
def test_kdsvd_equals_the_reference_with_canonical_teacher_signs(k):
  students, teachers = _stages(16, STUDENT_STAGES), _stages(17, TEACHER_STAGES)
  nchw = lambda maps: [_nchw(x).contiguous() for x in maps]
  _compare(lambda *s: losses.kdsvd(s[:3], s[3:], k),
           lambda *s: kdsvd_reference(nchw(s[:3]), nchw(s[3:]), k),
           students, tuple(teachers))


def test_kdsvd_is_unchanged_by_the_svds_signs():
  # The same maps through a backend whose singular vectors carry other signs:
  # the loss must not move (the reference's does).
  students, teachers = _stages(18, STUDENT_STAGES), _stages(19, TEACHER_STAGES)
  svd = jnp.linalg.svd

  def flipped(x, full_matrices=False):
    u, s, vt = svd(x, full_matrices=full_matrices)
    signs = jnp.where(jnp.arange(s.shape[-1]) % 2 == 0, -1.0, 1.0)
    return u * signs[..., None, :], s, vt * signs[..., :, None]
  with jax.enable_x64(True):
    plain = float(losses.kdsvd(students, teachers))
    jnp.linalg.svd = flipped
    try:
      other = float(losses.kdsvd(students, teachers))
    finally:
      jnp.linalg.svd = svd
  assert plain > 0
  np.testing.assert_allclose(other, plain, rtol=1e-12)


def test_kdsvd_gradients_are_finite_on_rank_deficient_maps():
  students, teachers = _stages(20, STUDENT_STAGES), _stages(21, TEACHER_STAGES)
  students[1][:, :, 2:] = 0.0  # half the columns zero: repeated zero singular values
  students[2][:] = 0.0
  grads = jax.grad(lambda s: losses.kdsvd(s, teachers))(students)
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  assert np.abs(np.asarray(grads[0])).sum() > 0


def test_no_gradient_reaches_the_teacher_side_of_any_loss():
  labels = jnp.asarray(np.arange(BATCH) % CLASSES)
  s, t = jnp.asarray(_logits(30)), jnp.asarray(_logits(31))
  ps, pt = jnp.asarray(_position_logits(32, 4)), jnp.asarray(_position_logits(33, 4))
  students = [jnp.asarray(x) for x in _stages(34, STUDENT_STAGES)]
  teachers_ = [jnp.asarray(x) for x in _stages(35, TEACHER_STAGES)]
  feature, kernel, bias = jnp.ones((BATCH, 6)), jnp.ones((6, CLASSES)), jnp.ones(CLASSES)
  cases = {
      'ttm': lambda t_: losses.ttm(s, t_, 0.1),
      'wttm': lambda t_: losses.wttm(s, t_, 0.2),
      'nkd': lambda t_: losses.nkd(s, t_, labels, 3.0, 3.5),
      'ctkd': lambda t_: losses.ctkd(s, t_, 1.0, -0.5),
      'mlkd': lambda t_: losses.mlkd(s, s * 2, t_, t_ * 2, (4.0, 3.0, 5.0, 2.0, 6.0)),
      'sdd': lambda t_: losses.sdd(ps, pt + t_.mean(), labels, 4.0, (1, 2)),
      'sdd_dkd': lambda t_: losses.sdd_dkd(ps, pt + t_.mean(), labels, 1.0, 8.0, 4.0, (1, 2)),
      'srd': lambda t_: sum(losses.srd(feature, feature * t_.mean(), kernel * t_.mean(), bias,
                                       t_)),
      'kdsvd': lambda t_: losses.kdsvd(students, [x * t_.mean() for x in teachers_]),
  }
  for name, fn in cases.items():
    grad = jax.grad(fn)(t)
    assert not np.asarray(grad).any(), name
