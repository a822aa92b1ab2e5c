"""The methods the field compares against, each against its reference code:
kdjax's loss_fn (value and gradient w.r.t. the student's logits, pooled feature
and stage outputs) equals a float64 PyTorch transcription of the reference's
loss on the global batch, on 1 device and on 4 (where the global-batch terms
of DIST, SP and PKT differ from per-device ones)."""
import functools
import math

import jax
from jax import lax
import numpy as np
import pytest

from configs import at
from configs import crd
from configs import dist
from configs import dkd
from configs import nst
from configs import offline_kd_ls
from configs import ofd
from configs import pkt
from configs import reviewkd
from configs import sp
from configs import vid
from kdjax import methods
from kdjax.methods import contrastive
from kdjax import steps
from tiny import unmapped

torch = pytest.importorskip('torch')
from scipy.stats import norm as scipy_norm  # pylint: disable=g-import-not-at-top
F = torch.nn.functional

BATCH, CLASSES, DEVICES = 8, 10, 4
LOSS_RTOL = 2e-5  # float32 against float64
LAM = 0.3
# NHWC stage outputs: the student's four stages; the teacher's five with two
# of the first grid, as RepVGG-A0's.
STUDENT_STAGES = ((8, 8, 4), (4, 4, 8), (2, 2, 16), (1, 1, 32))
TEACHER_STAGES = ((8, 8, 3), (8, 8, 5), (4, 4, 6), (2, 2, 7), (1, 1, 12))


# --- The references, transcribed (float64, NCHW) ---------------------------------
# mdistiller/distillers/DKD.py (logit-standardization-KD's adds `normalize`)
def ls_normalize(logit):
  return (logit - logit.mean(dim=-1, keepdims=True)) / (1e-7 + logit.std(dim=-1, keepdims=True))


def dkd_loss(logits_student, logits_teacher, gt_mask, alpha, beta, temperature):
  other_mask = ~gt_mask
  def cat_mask(t):
    return torch.cat([(t * gt_mask).sum(1, keepdims=True), (t * other_mask).sum(1, keepdims=True)],
                     dim=1)
  pred_student = cat_mask(F.softmax(logits_student / temperature, dim=1))
  pred_teacher = cat_mask(F.softmax(logits_teacher / temperature, dim=1))
  tckd = F.kl_div(torch.log(pred_student), pred_teacher, reduction='sum') * temperature**2 / len(
      gt_mask)
  pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
  log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
  nckd = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction='sum') * (
      temperature**2) / len(gt_mask)
  return alpha * tckd + beta * nckd


# hunto/image_classification_sota lib/models/losses/dist_kd.py
def pearson_correlation(a, b, eps=1e-8):
  a, b = a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1)
  return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_loss(z_s, z_t, beta, gamma, tau):
  y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
  inter = tau**2 * (1 - pearson_correlation(y_s, y_t).mean())
  intra = tau**2 * (1 - pearson_correlation(y_s.T, y_t.T).mean())
  return beta * inter + gamma * intra


# logit-standardization-KD mdistiller/distillers/KD.py
def kd_loss(logits_student, logits_teacher, temperature):
  log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
  pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
  return F.kl_div(log_pred_student, pred_teacher, reduction='none').sum(1).mean() * temperature**2


# mdistiller/distillers/AT.py
def at_loss(g_s, g_t, p):
  def _at(feat):
    return F.normalize(feat.pow(p).mean(1).reshape(feat.size(0), -1))
  return sum((_at(f_s) - _at(f_t)).pow(2).mean() for f_s, f_t in zip(g_s, g_t))


# mdistiller/distillers/NST.py
def nst_loss(g_s, g_t):
  def poly_kernel(a, b):
    return (a.unsqueeze(1) * b.unsqueeze(2)).sum(-1).pow(2)
  total = 0
  for f_s, f_t in zip(g_s, g_t):
    f_s = F.normalize(f_s.view(f_s.shape[0], f_s.shape[1], -1), dim=2)
    f_t = F.normalize(f_t.view(f_t.shape[0], f_t.shape[1], -1), dim=2)
    total = total + (poly_kernel(f_t, f_t).mean().detach() + poly_kernel(f_s, f_s).mean()
                     - 2 * poly_kernel(f_s, f_t).mean())
  return total


# mdistiller/distillers/SP.py
def sp_loss(f_s, f_t):
  bsz = f_s.shape[0]
  f_s, f_t = f_s.view(bsz, -1), f_t.view(bsz, -1)
  g_s = F.normalize(torch.mm(f_s, f_s.t()))
  g_t = F.normalize(torch.mm(f_t, f_t.t()))
  return ((g_t - g_s)**2).sum() / (bsz * bsz)


# mdistiller/distillers/PKT.py
def pkt_loss(f_s, f_t, eps=1e-7):
  f_s = f_s / (torch.sqrt(torch.sum(f_s**2, dim=1, keepdim=True)) + eps)
  f_t = f_t / (torch.sqrt(torch.sum(f_t**2, dim=1, keepdim=True)) + eps)
  s = (torch.mm(f_s, f_s.t()) + 1.0) / 2.0
  t = (torch.mm(f_t, f_t.t()) + 1.0) / 2.0
  s, t = s / s.sum(1, keepdim=True), t / t.sum(1, keepdim=True)
  return torch.mean(t * torch.log((t + eps) / (s + eps)))


# mdistiller/distillers/VID.py, its regressor's 1x1 convs as their weights
def vid_loss(regressor, log_scale, f_s, f_t, eps=1e-5):
  pred_mean = F.conv2d(F.relu(F.conv2d(F.relu(F.conv2d(f_s, regressor[0])), regressor[1])),
                       regressor[2])
  pred_var = torch.log(1.0 + torch.exp(log_scale)) + eps
  pred_var = pred_var.view(1, -1, 1, 1).to(pred_mean)
  neg_log_prob = 0.5 * ((pred_mean - f_t)**2 / pred_var + torch.log(pred_var))
  return torch.mean(neg_log_prob)


# mdistiller/distillers/ReviewKD.py, ABF's layers as functions of their parameters
def hcl_loss(fstudent, fteacher):
  loss_all = 0.0
  for fs, ft in zip(fstudent, fteacher):
    h = fs.shape[2]
    loss = F.mse_loss(fs, ft, reduction='mean')
    cnt, tot = 1.0, 1.0
    for l in [4, 2, 1]:
      if l >= h:
        continue
      tmpfs = F.adaptive_avg_pool2d(fs, (l, l))
      tmpft = F.adaptive_avg_pool2d(ft, (l, l))
      cnt /= 2.0
      loss += F.mse_loss(tmpfs, tmpft, reduction='mean') * cnt
      tot += cnt
    loss_all = loss_all + loss / tot
  return loss_all


def abf(x, y, p, shape, out_shape, fuse):
  bn = lambda z, q: F.batch_norm(z, None, None, q['scale'], q['bias'], training=True, eps=1e-5)
  n, _, h, w = x.shape
  x = bn(F.conv2d(x, p['conv1']['kernel']), p['bn1'])
  if fuse:
    y = F.interpolate(y, (shape, shape), mode='nearest')
    z = torch.sigmoid(F.conv2d(torch.cat([x, y], dim=1), p['att_conv']['kernel'],
                               p['att_conv']['bias']))
    x = x * z[:, 0].view(n, 1, h, w) + y * z[:, 1].view(n, 1, h, w)
  if x.shape[-1] != out_shape:
    x = F.interpolate(x, (out_shape, out_shape), mode='nearest')
  return bn(F.conv2d(x, p['conv2']['kernel'], padding=1), p['bn2']), x


def review_results(parts, features):
  """ReviewKD.forward_train's fusion of `features` (shallow -> deep, pooled last)."""
  x = features[::-1]
  shapes = [f.shape[-1] for f in x]
  n = len(x)
  out, res = abf(x[0], None, parts[f'abf{n - 1}'], None, shapes[0], fuse=False)
  results = [out]
  for k in range(1, n):
    out, res = abf(x[k], res, parts[f'abf{n - 1 - k}'], shapes[k], shapes[k], fuse=True)
    results.insert(0, out)
  return results


# mdistiller/distillers/OFD.py, the connectors as functions of their parameters
def feat_loss(source, target, margin):
  margin = margin.to(source)
  loss = ((source - margin)**2 * ((source > margin) & (target <= margin)).float()
          + (source - target)**2 * ((source > target) & (target > margin) & (target <= 0)).float()
          + (source - target)**2 * (target > 0).float())
  return torch.abs(loss).mean(dim=0).sum()


def ofd_margins(priors):
  """init_ofd_modules' margins, from each BN's (bias, weight)."""
  margins = []
  for mean, std in priors:
    margin = []
    for s, m in zip(std.tolist(), mean.tolist()):
      s = abs(s)
      if scipy_norm.cdf(-m / s) > 0.001:
        margin.append(-s * math.exp(-(m / s)**2 / 2) / math.sqrt(2 * math.pi)
                      / scipy_norm.cdf(-m / s) + m)
      else:
        margin.append(-3 * s)
    margins.append(torch.tensor(margin, dtype=torch.float64)[None, :, None, None])
  return margins


def ofd_loss(parts, feature_student, feature_teacher, margins):
  bn = lambda z, q: F.batch_norm(z, None, None, q['scale'], q['bias'], training=True, eps=1e-5)
  feature_student = [bn(F.conv2d(f, parts[f'connector{i}_conv']['kernel']),
                        parts[f'connector{i}_bn']) for i, f in enumerate(feature_student)]
  loss_distill = 0
  feat_num = len(feature_student)
  for i in range(feat_num):
    loss_distill = loss_distill + feat_loss(
        feature_student[i],
        F.adaptive_avg_pool2d(feature_teacher[i], feature_student[i].shape[-2:]).detach(),
        margins[i]) / 2**(feat_num - i - 1)
  return loss_distill


def reference_loss(name, student, teacher, labels, partner_labels, lam):
  """The reference's total loss of method `name` (its own weights), with the
  mixup criterion lam CE(labels) + (1 - lam) CE(partner's) (lam 1: no mixup)."""
  logits, t_logits = student['logits'], teacher['logits']
  ce = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, partner_labels)
  nchw = lambda x: x.permute(0, 3, 1, 2)
  s_stages = [nchw(s) for s in student['stage_features']]
  t_stages = [nchw(t) for t in teacher['stage_features']][1:]  # paired by grid
  if name == 'dkd':  # mdistiller: CE 1, alpha 1, beta 8, T 4 (ramp complete)
    # With mixup both mixed classes are the target classes (kdjax's reading).
    gt = torch.zeros_like(logits).scatter_(1, labels[:, None], 1)
    if lam < 1:
      gt = gt.scatter_(1, partner_labels[:, None], 1)
    gt = gt.bool()
    return ce + dkd_loss(logits, t_logits, gt, 1.0, 8.0, 4.0)
  if name == 'dist':  # dist_cifar.yaml: ori 1, kd 2, dist_t4
    return ce + 2.0 * dist_loss(logits, t_logits, 1.0, 1.0, 4.0)
  if name == 'offline_kd_ls':  # --logit-stand --base-temp 2 --kd-weight 9, CE 0.1
    return 0.1 * ce + 9.0 * kd_loss(ls_normalize(logits), ls_normalize(t_logits), 2.0)
  if name == 'at':
    return ce + 1000.0 * at_loss(s_stages, t_stages, 2)
  if name == 'nst':
    return ce + 50.0 * nst_loss(s_stages, t_stages)
  if name == 'sp':
    return ce + 3000.0 * sp_loss(s_stages[-1], t_stages[-1])
  if name == 'vid':  # mdistiller: CE 1, weight 1, eps 1e-5
    parts = student[methods.PARTS]['vid']
    return ce + sum(vid_loss([parts[f'regressor{i}_conv{j}']['kernel'] for j in range(3)],
                             parts[f'log_scale{i}'], s, t)
                    for i, (s, t) in enumerate(zip(s_stages, t_stages)))
  if name == 'ofd':  # mdistiller: CE 1, weight 0.001
    s_preact = [nchw(t) for t in student['stage_preact']]
    t_preact = [nchw(t) for t in teacher['stage_preact']][1:]
    margins = ofd_margins(teacher['stage_preact_prior'][1:])
    return ce + 0.001 * ofd_loss(student[methods.PARTS]['ofd'], s_preact, t_preact, margins)
  if name == 'reviewkd':  # mdistiller's CIFAR-100 config: weight 5 (ramp complete)
    pooled = lambda outputs: outputs['feature'][:, :, None, None]
    t_preact = [nchw(t) for t in teacher['stage_preact']][1:]
    results = review_results(student[methods.PARTS]['reviewkd'], s_stages + [pooled(student)])
    return ce + 5.0 * hcl_loss(results, t_preact + [pooled(teacher)])
  assert name == 'pkt'
  return ce + 30000.0 * pkt_loss(student['feature'], teacher['feature'])


CONFIGS = {'dkd': dkd, 'dist': dist, 'offline_kd_ls': offline_kd_ls, 'at': at, 'nst': nst,
           'sp': sp, 'pkt': pkt, 'vid': vid, 'ofd': ofd, 'reviewkd': reviewkd}


# --- kdjax ---------------------------------------------------------------------
def _outputs(rng, stages, features):
  return {'logits': 3 * rng.normal(size=(BATCH, CLASSES)),
          'feature': np.abs(rng.normal(size=(BATCH, features))),
          'stage_features': tuple(np.abs(rng.normal(size=(BATCH, *s))) for s in stages),
          'stage_preact': tuple(rng.normal(size=(BATCH, *s)) for s in stages)}


def _problem(seed):
  """(student outputs, teacher outputs, labels, partner labels) of a global batch."""
  rng = np.random.default_rng(seed)
  student = _outputs(rng, STUDENT_STAGES, 32)
  teacher = _outputs(rng, TEACHER_STAGES, 12)
  # The BN before each teacher stage's last ReLU, (bias, |scale|): some
  # channels almost never negative, where OFD's margin is -3 std.
  teacher['stage_preact_prior'] = tuple(
      (rng.normal(size=s[-1]) + 4 * (np.arange(s[-1]) % 3 == 0), rng.uniform(0.5, 1.5, s[-1]))
      for s in TEACHER_STAGES)
  labels = rng.integers(0, CLASSES, BATCH)
  partner = rng.permutation(labels)
  partner[0] = (labels[0] + 1) % CLASSES  # at least one example mixes two classes
  return student, teacher, labels, partner


def _this_devices_rows(tree, per_device):
  """The rows of every leaf of a global-batch `tree` that this device holds."""
  start = lax.axis_index(steps.AXIS) * per_device
  return jax.tree.map(lambda x: lax.dynamic_slice_in_dim(x, start, per_device), tree)


def _teachers_rows(outputs, per_device):
  """The teacher's outputs for this device's rows (its BN priors are per channel)."""
  rows = _this_devices_rows({k: v for k, v in outputs.items() if k != 'stage_preact_prior'},
                            per_device)
  return {**outputs, **rows}


def kdjax_loss_and_grads(config, student, teacher, targets, labels, num_devices, step=None,
                         batch_stats=None, examples=None):
  """loss_fn of `config` on the global batch split over `num_devices`, the
  student's outputs standing for its parameters: (mean loss, gradients
  averaged over the devices, as the train step averages them, and with
  `examples` the new batch_stats)."""
  per_device = BATCH // num_devices
  loss_fn = methods.get_loss_fn(
      config, lambda params, bs, pixels: (_this_devices_rows(params, per_device), bs),
      lambda variables, pixels: _teachers_rows(variables, per_device), steps.AXIS,
      steps_per_epoch=10)

  def device_step(params, batch_stats, pixels, targets, teacher_variables, labels, indices):
    example_args = examples and methods.Examples(indices, examples.train_labels, examples.key)
    (loss, (new_batch_stats, _)), grads = jax.value_and_grad(
        functools.partial(loss_fn, step=step, examples=example_args), has_aux=True)(
            params, batch_stats, pixels, targets, teacher_variables, labels)
    return lax.pmean(loss, steps.AXIS), lax.pmean(grads, steps.AXIS), new_batch_stats

  f32 = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), tree)
  pixels = np.zeros((BATCH, 1), np.float32)
  indices = np.asarray(examples.indices if examples else np.arange(BATCH), np.int32)
  args = (f32(student), f32(batch_stats or {}), pixels, f32(targets), f32(teacher),
          labels.astype(np.int32), indices)
  if num_devices == 1:
    return unmapped(device_step)(*args)
  split = lambda x: x.reshape(num_devices, per_device, *x.shape[1:])
  replicated = lambda tree: jax.tree.map(lambda x: np.broadcast_to(x, (num_devices, *x.shape)),
                                         tree)
  mapped = jax.pmap(device_step, axis_name=steps.AXIS, devices=jax.devices()[:num_devices])
  out = mapped(replicated(args[0]), replicated(args[1]), split(pixels), split(args[3]),
               replicated(args[4]), split(args[5]), split(indices))
  return jax.tree.map(lambda x: np.asarray(x)[0], out)


def _is_kernel(path):
  return jax.tree_util.keystr(path).endswith("['kernel']")


def torch_loss_and_grads(name, student, teacher, labels, partner, lam):
  """The reference's loss and its gradient w.r.t. `student` (the outputs and
  the method's parts, their conv kernels as PyTorch lays them out)."""
  def as_torch(tree, grad):
    return jax.tree_util.tree_map_with_path(lambda path, x: torch.tensor(
        x.transpose(3, 2, 0, 1) if _is_kernel(path) else x, dtype=torch.float64,
        requires_grad=grad), tree)
  s, t = as_torch(student, True), as_torch(teacher, False)
  loss = reference_loss(name, s, t, torch.tensor(labels), torch.tensor(partner), lam)
  loss.backward()
  # An output the loss does not read has no gradient: zero, as JAX gives it.
  def grad(path, x):
    g = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
    return g.transpose(2, 3, 1, 0) if _is_kernel(path) else g
  return float(loss.detach()), jax.tree_util.tree_map_with_path(grad, s)


def _with_parts(name, student, teacher):
  """The student's outputs and, for a method that trains parts of its own,
  those parts as kdjax initializes them: what the gradient is taken of."""
  config = CONFIGS[name].get_config('resnet50')
  if not methods.get_method(config.method).uses_parts:
    return student
  f32 = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), tree)
  parts = methods.init_parts(config, jax.random.PRNGKey(5), f32(student), f32(teacher),
                             np.zeros((BATCH, CLASSES), np.float32))
  return {**student, methods.PARTS: jax.tree.map(lambda x: np.asarray(x, np.float64),
                                                 parts['params'])}


def _targets(labels, partner, lam):
  eye = np.eye(CLASSES)
  return lam * eye[labels] + (1 - lam) * eye[partner]


# With mixup (lam 0.3) where the term reads the labels: DKD's target classes.
@pytest.mark.parametrize('num_devices', [1, DEVICES])
@pytest.mark.parametrize('name,lam', [(name, 1.0) for name in sorted(CONFIGS)] + [('dkd', LAM)])
def test_loss_and_gradients_equal_the_reference(name, lam, num_devices):
  student, teacher, labels, partner = _problem(seed=len(name))
  student = _with_parts(name, student, teacher)
  want_loss, want_grads = torch_loss_and_grads(name, student, teacher, labels, partner, lam)
  loss, grads, _ = kdjax_loss_and_grads(CONFIGS[name].get_config('resnet50'), student,
                                        teacher, _targets(labels, partner, lam), labels,
                                        num_devices)
  np.testing.assert_allclose(float(loss), want_loss, rtol=LOSS_RTOL)
  # float32 against float64: relative, with an absolute floor at the largest
  # gradient's scale for the entries that cancel to about zero.
  scale = max(np.abs(g).max() for g in jax.tree.leaves(want_grads))
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * scale)


@pytest.mark.parametrize('name', ['dist', 'sp', 'pkt'])
def test_the_global_batch_terms_differ_from_per_device_ones(name):
  # What the 4-device cases above would miss if a term saw only its device's rows.
  student, teacher, labels, partner = _problem(seed=len(name))
  whole, _ = torch_loss_and_grads(name, student, teacher, labels, partner, 1.0)
  quarter = lambda tree, i: jax.tree.map(lambda x: x[2 * i:2 * i + 2], tree)
  per_device = np.mean([torch_loss_and_grads(name, quarter(student, i), quarter(teacher, i),
                                             labels[2 * i:2 * i + 2],
                                             partner[2 * i:2 * i + 2], 1.0)[0]
                        for i in range(DEVICES)])
  # (DIST's intra-class term moves the total, CE included, least: 0.14 %.)
  assert abs(per_device - whole) > 10 * LOSS_RTOL * abs(whole)


def test_dkd_ramps_over_its_first_20_epochs_counted_from_1():
  # mdistiller weighs epoch e's DKD loss min(e / 20, 1), its first epoch 1/20.
  student, teacher, labels, partner = _problem(seed=0)
  targets = _targets(labels, partner, 1.0)
  def loss(config, step=None):
    return float(kdjax_loss_and_grads(config, student, teacher, targets, labels, 1, step)[0])
  config = dkd.get_config('resnet50')
  full = loss(config)
  no_dkd = dkd.get_config('resnet50')
  no_dkd.dkd_alpha = no_dkd.dkd_beta = 0.0
  ce = loss(no_dkd)
  assert full - ce > 1e-2
  for step, weight in ((0, 1 / 20), (9, 1 / 20), (10, 2 / 20), (95, 10 / 20), (189, 19 / 20),
                       (190, 1.0), (5000, 1.0)):  # 10 steps an epoch
    np.testing.assert_allclose(loss(config, step) - ce, weight * (full - ce), rtol=1e-4)


# mdistiller/distillers/CRD.py: Embed, ContrastMemory.forward (its memory and
# Z as arguments, updated in place), ContrastLoss
def crd_embed(x, p):
  x = F.linear(x, p['kernel'].T, p['bias'])
  return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


def contrast_memory(memory_v1, memory_v2, z, v1, v2, y, idx, k, t, momentum):
  batch_size, (output_size, input_size) = v1.size(0), memory_v1.shape
  weight_v1 = torch.index_select(memory_v1, 0, idx.view(-1)).detach().view(
      batch_size, k + 1, input_size)
  out_v2 = torch.exp(torch.div(torch.bmm(weight_v1, v2.view(batch_size, input_size, 1)), t))
  weight_v2 = torch.index_select(memory_v2, 0, idx.view(-1)).detach().view(
      batch_size, k + 1, input_size)
  out_v1 = torch.exp(torch.div(torch.bmm(weight_v2, v1.view(batch_size, input_size, 1)), t))
  if z[0] < 0:
    z[0] = out_v1.mean().item() * output_size
  if z[1] < 0:
    z[1] = out_v2.mean().item() * output_size
  out_v1, out_v2 = torch.div(out_v1, z[0]), torch.div(out_v2, z[1])
  with torch.no_grad():
    for memory, v in ((memory_v1, v1), (memory_v2, v2)):
      pos = torch.index_select(memory, 0, y.view(-1))
      pos.mul_(momentum)
      pos.add_(torch.mul(v, 1 - momentum))
      memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
  return out_v1, out_v2


def contrast_loss(x, num_data):
  eps, bsz, m = 1e-7, x.shape[0], x.size(1) - 1
  pn = 1 / float(num_data)
  p_pos = x.select(1, 0)
  log_d1 = torch.div(p_pos, p_pos.add(m * pn + eps)).log_()
  p_neg = x.narrow(1, 1, m)
  log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + eps)).log_()
  return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz


NUM_TRAIN = 40


@pytest.mark.parametrize('num_devices', [1, DEVICES])
def test_crd_loss_gradients_and_memory_update_equal_the_reference(num_devices):
  # Two steps: the first sets the normalizers Z, the second uses them.
  config = crd.get_config('resnet50')
  config.crd_negatives = 6
  student, teacher, labels, _ = _problem(seed=3)
  rng = np.random.default_rng(4)
  train_labels = rng.integers(0, CLASSES, NUM_TRAIN).astype(np.int32)
  parts = methods.init_parts(config, jax.random.PRNGKey(5), student, teacher,
                             np.zeros((BATCH, CLASSES), np.float32), NUM_TRAIN)
  params = jax.tree.map(np.asarray, parts['params']['crd'])
  state = jax.tree.map(np.asarray, parts['batch_stats']['crd'])
  assert state['memory_student'].shape == (NUM_TRAIN, 128)
  assert list(state['normalizers']) == [-1, -1]  # unset until the first step
  # The reference's state and parameters, float64.
  memory_v1, memory_v2 = (torch.tensor(state[k], dtype=torch.float64)
                          for k in ('memory_student', 'memory_teacher'))
  z = [-1.0, -1.0]
  embeds = {k: {n: torch.tensor(v, dtype=torch.float64, requires_grad=True)
                for n, v in params[k].items()} for k in ('embed_student', 'embed_teacher')}
  for step_index in range(2):
    indices = rng.permutation(NUM_TRAIN)[:BATCH].astype(np.int32)
    examples = methods.Examples(indices, train_labels, jax.random.PRNGKey(10 + step_index))
    contrast = np.asarray(contrastive.negatives(examples.key, indices, train_labels, 6))
    labels = train_labels[indices]
    loss, grads, new_state = kdjax_loss_and_grads(
        config, {**student, methods.PARTS: {'crd': params}}, teacher,
        np.eye(CLASSES)[labels], labels, num_devices,
        batch_stats={methods.PARTS: {'crd': state}}, examples=examples)

    feature = torch.tensor(student['feature'], dtype=torch.float64, requires_grad=True)
    logits = torch.tensor(student['logits'], dtype=torch.float64, requires_grad=True)
    v1 = crd_embed(feature, embeds['embed_student'])
    v2 = crd_embed(torch.tensor(teacher['feature'], dtype=torch.float64),
                   embeds['embed_teacher'])
    out_s, out_t = contrast_memory(memory_v1, memory_v2, z, v1, v2,
                                   torch.tensor(indices, dtype=torch.long),
                                   torch.tensor(contrast, dtype=torch.long), 6, 0.07, 0.5)
    want = (F.cross_entropy(logits, torch.tensor(labels, dtype=torch.long))
            + 0.8 * (contrast_loss(out_s, NUM_TRAIN) + contrast_loss(out_t, NUM_TRAIN)))
    for tensor in (feature, logits, *embeds['embed_student'].values(),
                   *embeds['embed_teacher'].values()):
      tensor.grad = None
    want.backward()
    np.testing.assert_allclose(float(loss), float(want), rtol=2e-5)
    np.testing.assert_allclose(grads['feature'], feature.grad.numpy(), rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(grads['logits'], logits.grad.numpy(), rtol=2e-4, atol=1e-7)
    for embed in embeds:
      for name, tensor in embeds[embed].items():
        np.testing.assert_allclose(grads[methods.PARTS]['crd'][embed][name],
                                   tensor.grad.numpy(), rtol=2e-4, atol=1e-7)
    state = new_state[methods.PARTS]['crd']
    np.testing.assert_allclose(state['memory_student'], memory_v1.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state['memory_teacher'], memory_v2.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(state['normalizers'], z, rtol=1e-5)


def test_crd_negatives_are_other_classes_drawn_per_example():
  train_labels = np.repeat(np.arange(4), [3, 5, 2, 6]).astype(np.int32)
  indices = np.array([0, 4, 9, 12], np.int32)
  key = jax.random.PRNGKey(0)
  contrast = np.asarray(contrastive.negatives(key, indices, train_labels, 500))
  np.testing.assert_array_equal(contrast[:, 0], indices)
  for row, index in zip(contrast, indices):
    others = set(np.flatnonzero(train_labels != train_labels[index]))
    assert set(row[1:]) == others  # 500 draws reach every example of the other classes
  # Each example's draws depend on its index and the key alone, not on the batch.
  np.testing.assert_array_equal(
      np.asarray(contrastive.negatives(key, indices[2:], train_labels, 500)), contrast[2:])
