import jax
import numpy as np
import pytest

from kdjax import losses

torch = pytest.importorskip('torch')


def test_cross_entropy_and_its_gradient_match_torch():
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(16, 100)) * 5).astype(np.float32)
  labels = rng.integers(0, 100, 16).astype(np.int32)
  value, grad = jax.value_and_grad(losses.cross_entropy)(logits, labels)
  t_logits = torch.tensor(logits, requires_grad=True)
  t_value = torch.nn.functional.cross_entropy(t_logits, torch.tensor(labels).long())
  t_value.backward()
  np.testing.assert_allclose(float(value), t_value.item(), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), t_logits.grad.numpy(), atol=1e-7)


def test_cross_entropy_is_finite_for_extreme_logits():
  logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
  value, grad = jax.value_and_grad(losses.cross_entropy)(logits, np.array([1, 2]))
  assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
  np.testing.assert_allclose(float(value), 1e4, rtol=1e-6)


def _torch_value_and_grad(fn, first, *rest):
  """torch's value of fn and its gradient with respect to the first argument."""
  tensor = torch.tensor(first, requires_grad=True)
  value = fn(tensor, *map(torch.tensor, rest))
  value.backward()
  return value.item(), tensor.grad.numpy()


def test_soft_cross_entropy_and_its_gradient_match_torch():
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=(16, 100)) * 5).astype(np.float32)
  targets = rng.dirichlet(np.ones(100), 16).astype(np.float32)
  value, grad = jax.value_and_grad(losses.soft_cross_entropy)(logits, targets)
  t_value, t_grad = _torch_value_and_grad(
      torch.nn.functional.cross_entropy, logits, targets)
  np.testing.assert_allclose(float(value), t_value, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), t_grad, atol=1e-7)


def test_soft_cross_entropy_of_a_mixed_target_is_the_mixup_sum_of_two_losses():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(8, 10)).astype(np.float32)
  a, b = rng.integers(0, 10, 8), rng.integers(0, 10, 8)
  onehot = np.eye(10, dtype=np.float32)
  mixed = 0.3 * onehot[a] + 0.7 * onehot[b]
  np.testing.assert_allclose(
      float(losses.soft_cross_entropy(logits, mixed)),
      0.3 * float(losses.cross_entropy(logits, a)) + 0.7 * float(losses.cross_entropy(logits, b)),
      rtol=1e-6)


def _torch_kd(student, teacher, temperature):
  f = torch.nn.functional
  return f.kl_div(f.log_softmax(student / temperature, dim=1),
                  f.softmax(teacher / temperature, dim=1),
                  reduction='batchmean') * temperature * temperature


@pytest.mark.parametrize('temperature', [1.0, 3.0, 4.0])
def test_kl_divergence_and_its_gradient_match_torch(temperature):
  rng = np.random.default_rng(3)
  student = (rng.normal(size=(16, 100)) * 4).astype(np.float32)
  teacher = (rng.normal(size=(16, 100)) * 4).astype(np.float32)
  value, grads = jax.value_and_grad(losses.kl_divergence, argnums=(0, 1))(
      student, teacher, temperature)
  t_value, t_grad = _torch_value_and_grad(
      lambda s, t: _torch_kd(s, t, temperature), student, teacher)
  np.testing.assert_allclose(float(value), t_value, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grads[0]), t_grad, atol=1e-7)
  assert not np.asarray(grads[1]).any()  # the teacher side gets no gradient


def test_kl_divergence_is_zero_for_identical_logits_and_positive_otherwise():
  logits = np.random.default_rng(4).normal(size=(4, 10)).astype(np.float32)
  assert abs(float(losses.kl_divergence(logits, logits, 4.0))) < 1e-6
  assert float(losses.kl_divergence(logits, logits[::-1], 4.0)) > 0.1


@pytest.mark.parametrize('temperature', [1.0, 4.0, 20.0])
def test_kl_divergence_is_finite_for_extreme_logits(temperature):
  rng = np.random.default_rng(5)
  student = (np.sign(rng.normal(size=(8, 100))) * 1e4).astype(np.float32)
  teacher = (np.sign(rng.normal(size=(8, 100))) * 1e4).astype(np.float32)
  teacher[:, 0] = 1e4  # a confident teacher that puts exactly zero mass on classes
  value, grad = jax.value_and_grad(losses.kl_divergence)(student, teacher, temperature)
  assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all()
  t_value, t_grad = _torch_value_and_grad(
      lambda s, t: _torch_kd(s.double(), t.double(), temperature), student, teacher)
  np.testing.assert_allclose(float(value), t_value, rtol=1e-4)
  np.testing.assert_allclose(np.asarray(grad), t_grad, atol=1e-6)


def test_feature_l2_and_its_gradient_match_a_direct_computation():
  rng = np.random.default_rng(6)
  features = rng.normal(size=(16, 32)).astype(np.float32)
  targets = rng.normal(size=(16, 32)).astype(np.float32)
  value, grads = jax.value_and_grad(losses.feature_l2, argnums=(0, 1))(features, targets)
  t_value, t_grad = _torch_value_and_grad(
      lambda f, t: ((f - t.detach())**2).sum(1).mean(), features, targets)
  np.testing.assert_allclose(float(value), t_value, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grads[0]), t_grad, rtol=1e-6)
  assert not np.asarray(grads[1]).any()


def test_mean_squared_error_and_its_gradient_match_torch_mse():
  rng = np.random.default_rng(5)
  hint = rng.normal(size=(4, 8, 8, 6)).astype(np.float32)
  target = rng.normal(size=(4, 8, 8, 6)).astype(np.float32)
  value, (grad, target_grad) = jax.value_and_grad(losses.mean_squared_error, (0, 1))(
      hint, target)
  t_value, t_grad = _torch_value_and_grad(torch.nn.functional.mse_loss, hint, target)
  np.testing.assert_allclose(float(value), t_value, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad), t_grad, rtol=1e-5, atol=1e-9)
  assert not np.asarray(target_grad).any()


# Relational KD as RepDistiller's distiller_zoo/RKD.py computes it (the paper's
# authors' formulation), written out in torch.
def _torch_pdist(e, eps=1e-12):
  square = e.pow(2).sum(dim=1)
  distances = (square.unsqueeze(1) + square.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
  distances = distances.clone()
  distances[range(len(e)), range(len(e))] = 0
  return distances


def _torch_rkd_distance(student, teacher):
  with torch.no_grad():
    t_d = _torch_pdist(teacher)
    t_d = t_d / t_d[t_d > 0].mean()
  d = _torch_pdist(student)
  d = d / d[d > 0].mean()
  return torch.nn.functional.smooth_l1_loss(d, t_d)


def _torch_angles(e):
  differences = e.unsqueeze(0) - e.unsqueeze(1)
  unit = torch.nn.functional.normalize(differences, p=2, dim=2)
  return torch.bmm(unit, unit.transpose(1, 2)).view(-1)


def _torch_rkd_angle(student, teacher):
  with torch.no_grad():
    t_angle = _torch_angles(teacher)
  return torch.nn.functional.smooth_l1_loss(_torch_angles(student), t_angle)


@pytest.mark.parametrize('loss,reference', [(losses.rkd_distance, _torch_rkd_distance),
                                            (losses.rkd_angle, _torch_rkd_angle)])
@pytest.mark.parametrize('scale', [0.1, 3.0])
def test_rkd_losses_and_their_gradients_match_torch(loss, reference, scale):
  # Student and teacher features of different sizes, as ResNet18 (512) and ResNet50 (2048).
  rng = np.random.default_rng(6)
  student = (scale * rng.normal(size=(12, 16))).astype(np.float32)
  teacher = rng.normal(size=(12, 40)).astype(np.float32)
  value, (grad, teacher_grad) = jax.value_and_grad(loss, (0, 1))(student, teacher)
  t_value, t_grad = _torch_value_and_grad(reference, student, teacher)
  assert t_value > 1e-3  # not vacuous: the two relation structures differ
  np.testing.assert_allclose(float(value), t_value, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(grad), t_grad, rtol=1e-4, atol=1e-7)
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0
  assert not np.asarray(teacher_grad).any()


def test_rkd_losses_vanish_when_the_student_is_a_scaled_rotation_of_the_teacher():
  # Distances normalized by their mean and angles are invariant to rotation and scale.
  rng = np.random.default_rng(7)
  teacher = rng.normal(size=(10, 8)).astype(np.float32)
  rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  student = (2.5 * teacher @ rotation).astype(np.float32)
  assert float(losses.rkd_distance(student, teacher)) < 1e-10
  assert float(losses.rkd_angle(student, teacher)) < 1e-10


def test_reviewkds_hierarchical_context_matches_mdistillers_at_imagenets_grids():
  # At 224 px the levels are 56, 28, 14, 7 and 1 wide: 14 and 7 pool to 4x4
  # through overlapping windows (adaptive_avg_pool2d's).
  from reference_loss_test import hcl_loss  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  students, targets = ([rng.normal(size=(2, size, size, 3)).astype(np.float32)
                        for size in (56, 28, 14, 7, 1)] for _ in range(2))
  value, grads = jax.value_and_grad(losses.hierarchical_context)(students, targets)
  t_students = [torch.tensor(s.transpose(0, 3, 1, 2), requires_grad=True) for s in students]
  want = hcl_loss(t_students, [torch.tensor(t.transpose(0, 3, 1, 2)) for t in targets])
  want.backward()
  np.testing.assert_allclose(float(value), want.item(), rtol=1e-6)
  for grad, t_student in zip(grads, t_students):
    np.testing.assert_allclose(np.asarray(grad), t_student.grad.numpy().transpose(0, 2, 3, 1),
                               atol=1e-8)
