"""CTKD's curriculum temperature (Li et al., AAAI 2023; zhengli97/CTKD): a
learned global temperature that the student's gradient, reversed, pushes
towards harder targets."""
import math

import jax
import jax.numpy as jnp

from kdjax.losses.logits import as_float
from kdjax.losses.logits import kl_divergence


@jax.custom_vjp
def _scaled_gradient(x, scale):
  """x, whose gradient is multiplied by `scale` (negative: reversed): the
  reference's GradientReversal."""
  del scale
  return x


def _scaled_gradient_fwd(x, scale):
  return x, scale


def _scaled_gradient_bwd(scale, g):
  return scale * g, jnp.zeros_like(scale)


_scaled_gradient.defvjp(_scaled_gradient_fwd, _scaled_gradient_bwd)


def ctkd_temperature(temperature_param, t_start: float = 1.0, t_end: float = 20.0):
  """The temperature a parameter stands for: t_start + t_end sigmoid(param)."""
  return t_start + t_end * jax.nn.sigmoid(temperature_param)


def ctkd(student_logits: jax.Array, teacher_logits: jax.Array, temperature_param: jax.Array,
         lam, t_start: float = 1.0, t_end: float = 20.0) -> jax.Array:
  """T^2 KL(softmax(teacher / T) || softmax(student / T)), batch mean, at the
  learned T = t_start + t_end sigmoid(temperature_param) (a scalar); the
  gradient reaching temperature_param is `lam` times its own (lam <= 0
  reverses it: the temperature learns to raise the loss)."""
  student = as_float(student_logits)
  param = _scaled_gradient(jnp.asarray(temperature_param, student.dtype).reshape(()),
                           jnp.asarray(lam, student.dtype))
  return kl_divergence(student, teacher_logits, ctkd_temperature(param, t_start, t_end))


def ctkd_lambda(epoch, num_epochs: float, lam_min: float = -1.0, lam_max: float = 0.0):
  """The reference's CosineDecay: lam_max at epoch 0 to lam_min at
  `num_epochs` along a half cosine, then lam_min; epochs count from 1."""
  i = jnp.clip(jnp.asarray(epoch, jnp.float32), 0.0, num_epochs)
  return (jnp.cos(i * math.pi / num_epochs) + 1.0) * 0.5 * (lam_max - lam_min) + lam_min
