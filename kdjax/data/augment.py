"""Augmentation as pure functions of (images, keys), run on the device inside
the jitted train step: the study's crop, flip and rotation, and mixup."""
import jax
import jax.numpy as jnp
import numpy as np

PAD = 4  # pixels of zero padding before the random crop, as in RandomCrop(32, 4)


def example_keys(key: jax.Array, positions: jax.Array) -> jax.Array:
  """One key per example from its position in the global batch.

  Keys depend on the global position, not on the device, so an augmented
  batch is the same whatever number of devices it is split over.
  """
  return jax.vmap(jax.random.fold_in, (None, 0))(key, positions)


# Rotations compute each pixel's source in fixed point: cos and sin as integers
# of FIXED = 2**20 units and pixel offsets from the centre in half pixels, so
# the source pixels are integer arithmetic, exactly the same whatever XLA fuses
# or however many examples a device holds (floats are not: a source that lands
# within a rounding error of a pixel border can flip between compilations).
# Sources are within 1.5e-5 pixel of PIL's double-precision ones.
_FIXED = 2**20
# Augmentation draws angles in steps of ANGLE_STEP degrees, whose fixed-point
# cos and sin come from a table computed once in float64, not from the device's
# cos and sin, which may differ in their last bit between compilations.
ANGLE_STEP = 0.01


def _fixed_point(radians: np.ndarray) -> np.ndarray:
  return np.stack([np.round(np.cos(radians) * _FIXED),
                   np.round(np.sin(radians) * _FIXED)], -1).astype(np.int32)


def _rotate_one(image, cos_sin):
  """PIL's Image.rotate(degrees, resample=NEAREST, fillcolor=0), given the
  angle's fixed-point (cos, sin): each output pixel centre, rotated clockwise by
  the angle about the image centre, reads the input pixel it lands in
  (truncating, as PIL's nearest filter does), or 0 outside the image."""
  height, width = image.shape[:2]
  cos, sin = cos_sin[0], cos_sin[1]
  x = (2 * jnp.arange(width, dtype=jnp.int32) + 1 - width)[None, :]  # half pixels
  y = (2 * jnp.arange(height, dtype=jnp.int32) + 1 - height)[:, None]
  # source = (cos * x - sin * y) / 2 + width / 2, in units of 1 / (2 * FIXED).
  source_x = jnp.right_shift(cos * x - sin * y + width * _FIXED, 21)
  source_y = jnp.right_shift(sin * x + cos * y + height * _FIXED, 21)
  inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
  pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
  return jnp.where(inside[..., None], pixels, jnp.zeros((), image.dtype))


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
  """[N, H, W, C] images rotated counter-clockwise by [N] angles in degrees about
  their centres, nearest neighbour, zero fill: torchvision's RandomRotation on PIL
  images. A gather, so it runs on the device inside a jitted step."""
  radians = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  cos_sin = jnp.stack([jnp.round(jnp.cos(radians) * _FIXED),
                       jnp.round(jnp.sin(radians) * _FIXED)], -1).astype(jnp.int32)
  return jax.vmap(_rotate_one)(images, cos_sin)


def _augment_one(image, key, rotation_degrees, crop):
  crop_key, flip_key, rotate_key = jax.random.split(key, 3)
  if crop:
    height, width, channels = image.shape
    padded = jnp.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    top, left = jax.random.randint(crop_key, (2,), 0, 2 * PAD + 1)
    image = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
    image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
  if rotation_degrees:
    steps = int(round(rotation_degrees / ANGLE_STEP))
    table = _fixed_point(np.deg2rad(np.arange(-steps, steps + 1) * ANGLE_STEP))
    index = jax.random.randint(rotate_key, (), 0, 2 * steps + 1)
    image = _rotate_one(image, jnp.asarray(table)[index])
  return image


def augment(images: jax.Array, keys: jax.Array, rotation_degrees: float = 0.0,
            crop: bool = True) -> jax.Array:
  """The study's training transform, one key per image: zero-pad 4 + random
  crop, random horizontal flip (unless `crop` is False: images the host
  cropped and flipped already), then (if `rotation_degrees`) a rotation by an
  angle uniform over [-rotation_degrees, rotation_degrees] in steps of
  ANGLE_STEP degrees."""
  return jax.vmap(_augment_one, (0, 0, None, None))(images, keys, rotation_degrees, crop)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 pixels -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def normalize(images: jax.Array, mean, std) -> jax.Array:
  return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


def mixup_lambdas(seed: int, first_step: int, num_steps: int, alpha: float) -> np.ndarray:
  """Mixup's lam ~ Beta(alpha, alpha) of steps first_step, ..., first_step +
  num_steps - 1 (float32), one per batch as the reference implementation draws
  it; each a function of (seed, step) only, so a resumed run draws the same.
  Drawn on the host: jax.random.beta's rejection sampler is a loop whose trip
  count depends on the draw, which XLA:GPU runs by copying each loop condition
  to the host. Alpha 0 (no mixup) gives 1s."""
  if not alpha:
    return np.ones(num_steps, np.float32)
  return np.asarray([np.random.default_rng([seed, step]).beta(alpha, alpha)
                     for step in range(first_step, first_step + num_steps)], np.float32)


def mixup(batch, partner, lam: jax.Array):
  """Mixup (Zhang et al., 2018): lam * batch + (1 - lam) * partner, leaf by leaf;
  `batch` and `partner` are matching pytrees (pixels, target distributions)."""
  return jax.tree.map(lambda a, b: lam * a + (1 - lam) * b, batch, partner)
