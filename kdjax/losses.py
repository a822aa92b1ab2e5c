"""Loss functions: arrays in, scalar (batch mean) out. They never see params or configs."""
import jax
import jax.numpy as jnp
import optax


@jax.jit
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()
