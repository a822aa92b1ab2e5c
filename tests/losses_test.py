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
