"""The CPU convolution gives lax's outputs and gradients (to float rounding)."""
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.models import conv

# Every test convolution is large enough for the custom gradient.
pytestmark = pytest.mark.usefixtures('all_convs_custom')


@pytest.fixture
def all_convs_custom(monkeypatch):
  monkeypatch.setattr(conv, 'MIN_MACS', 0)

LAYOUT = ('NHWC', 'HWIO', 'NHWC')


@pytest.mark.parametrize('kernel,stride,padding', [
    (3, 1, ((1, 1), (1, 1))), (3, 2, ((1, 1), (1, 1))), (1, 2, 'VALID'), (1, 1, 'VALID'),
    (8, 8, 'VALID'), (2, 2, 'VALID'), (3, 2, 'SAME')])
def test_outputs_and_gradients_equal_lax(kernel, stride, padding):
  rng = np.random.default_rng(kernel * 10 + stride)
  x = jnp.asarray(rng.normal(size=(4, 16, 16, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 7)), jnp.float32)
  numbers = lax.conv_dimension_numbers(x.shape, w.shape, LAYOUT)

  def loss(fn):
    return jax.jit(jax.value_and_grad(
        lambda x, w: jnp.sum(jnp.sin(fn(x, w, (stride, stride), padding,
                                        dimension_numbers=numbers))), argnums=(0, 1)))

  (value, (dx, dw)), (ref_value, (ref_dx, ref_dw)) = (
      loss(conv.conv_general_dilated)(x, w), loss(lax.conv_general_dilated)(x, w))
  assert float(value) == float(ref_value)
  np.testing.assert_array_equal(dx, ref_dx)  # the input gradient is lax's own
  np.testing.assert_allclose(dw, ref_dw, rtol=0, atol=2e-6 * float(jnp.abs(ref_dw).max()))


def _jaxpr(x, w, **kwargs):
  numbers = lax.conv_dimension_numbers(x.shape, w.shape, LAYOUT)
  return str(jax.make_jaxpr(lambda x, w: conv.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=numbers, **kwargs))(x, w))


def test_cpu_uses_the_custom_gradient_for_large_plain_convs_only(monkeypatch):
  x, w = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
  assert 'custom_vjp_call' in _jaxpr(x, w)
  assert 'custom_vjp_call' not in _jaxpr(x, w[:, :, :2], feature_group_count=2)
  monkeypatch.setattr(conv, 'MIN_MACS', 8 * 8 * w.size + 1)  # one more than this conv's
  assert 'custom_vjp_call' not in _jaxpr(x, w)
