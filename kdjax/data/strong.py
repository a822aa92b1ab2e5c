"""MLKD's strong view as a pure function of (images, keys), on the device:
FixMatch's RandAugment as Jin-Ying/Multi-Level-Logit-Distillation
mdistiller/dataset/cifar100.py writes it (2 of its 14 PIL ops, drawn with
replacement, each at a uniform magnitude in its range), then Cutout of a
square up to half the side, grey (125, 123, 114).

Each op is PIL's on uint8 RGB images: the lookup tables, blends and filters
in integer steps as Pillow computes them, the geometric ops as its affine
transform with nearest neighbours and black fill. Every op is computed for
every image and one is selected, so the step has no data-dependent branch.
"""
import jax
import jax.numpy as jnp

from kdjax.data.augment import rotate as rotate_images

# (name, low, high): the reference's augment_list, in its order.
OPS = (('autocontrast', 0, 1), ('brightness', 0.05, 0.95), ('color', 0.05, 0.95),
       ('contrast', 0.05, 0.95), ('equalize', 0, 1), ('identity', 0, 1),
       ('posterize', 4, 8), ('rotate', -30, 30), ('sharpness', 0.05, 0.95),
       ('shear_x', -0.3, 0.3), ('shear_y', -0.3, 0.3), ('solarize', 0, 256),
       ('translate_x', -0.3, 0.3), ('translate_y', -0.3, 0.3))
OPS_PER_IMAGE = 2
CUTOUT_MAX = 0.5  # of the side
CUTOUT_COLOR = (125, 123, 114)


def _lut(image, table):
  """Per-channel lookup: table [256, C] or [256]."""
  table = jnp.broadcast_to(table.reshape(256, -1), (256, image.shape[-1]))
  return jnp.take_along_axis(table, image.reshape(-1, image.shape[-1]).astype(jnp.int32),
                             0).reshape(image.shape)


def _clip8(x):
  return jnp.clip(x, 0, 255).astype(jnp.uint8)


def _blend(degenerate, image, factor):
  """PIL's Image.blend(degenerate, image, factor): in1 + factor (in2 - in1),
  truncated towards zero, clipped (ImagingBlend)."""
  a, b = degenerate.astype(jnp.float32), image.astype(jnp.float32)
  return _clip8(jnp.trunc(a + factor * (b - a)))


def _grey(image):
  """PIL's convert('L'): (299 R + 587 G + 114 B) / 1000 in its fixed point."""
  rgb = image.astype(jnp.int32)
  return (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16


def _histograms(image):
  """[256, C] pixel counts per value of each channel."""
  values = jnp.arange(256, dtype=jnp.int32)[:, None, None]
  flat = image.reshape(-1, image.shape[-1]).astype(jnp.int32)
  return jnp.sum(flat[None] == values, 1)


def autocontrast(image, _):
  """ImageOps.autocontrast(cutoff=0): each channel stretched from its min..max
  to 0..255, (i - lo) x 255 / (hi - lo) rounded down, in integers (PIL's
  double arithmetic is one lower where it lands just under a whole number);
  a constant channel unchanged."""
  lo, hi = image.min((0, 1)).astype(jnp.int32), image.max((0, 1)).astype(jnp.int32)
  ix = jnp.arange(256, dtype=jnp.int32)[:, None]
  table = jnp.clip((ix - lo) * 255 // jnp.maximum(hi - lo, 1), 0, 255)
  return _lut(image, jnp.where(hi > lo, table, ix).astype(jnp.uint8))


def brightness(image, v):
  return _blend(jnp.zeros_like(image), image, v)


def color(image, v):
  return _blend(jnp.broadcast_to(_grey(image)[..., None], image.shape), image, v)


def contrast(image, v):
  # The mean of the grey image's histogram, rounded (ImageEnhance.Contrast).
  mean = jnp.floor(jnp.mean(_grey(image).astype(jnp.float32)) + 0.5)
  return _blend(jnp.full(image.shape, mean), image, v)


def equalize(image, _):
  """ImageOps.equalize: per channel, step = (pixels - the last non-empty
  bin's count) // 255, value i -> (step // 2 + pixels below i) // step;
  unchanged where step is 0."""
  histogram = _histograms(image)  # [256, C]
  last = jnp.max(jnp.where(histogram > 0, jnp.arange(256)[:, None], -1), 0)
  step = (histogram.sum(0) - jnp.take_along_axis(histogram, last[None], 0)[0]) // 255
  below = jnp.cumsum(histogram, 0) - histogram
  table = (step // 2 + below) // jnp.maximum(step, 1)
  table = jnp.where(step > 0, table, jnp.arange(256)[:, None])
  return _lut(image, jnp.clip(table, 0, 255).astype(jnp.uint8))


def identity(image, _):
  return image


def posterize(image, v):
  bits = jnp.maximum(jnp.floor(v), 1).astype(jnp.int32)
  mask = (255 << (8 - bits)) & 255
  return (image.astype(jnp.int32) & mask).astype(jnp.uint8)


def _affine(image, matrix):
  """PIL's transform(AFFINE, (a, b, c, d, e, f), NEAREST), black fill: output
  pixel (x, y) reads input (floor(a x' + b y' + c), floor(d x' + e y' + f))
  at its centre (x', y') = (x + 0.5, y + 0.5)."""
  a, b, c, d, e, f = matrix
  height, width = image.shape[:2]
  x = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
  y = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
  source_x = jnp.floor(a * x + b * y + c).astype(jnp.int32)
  source_y = jnp.floor(d * x + e * y + f).astype(jnp.int32)
  inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
  pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
  return jnp.where(inside[..., None], pixels, jnp.zeros((), image.dtype))


def rotate(image, v):
  """Image.rotate(v): counter-clockwise about the centre, nearest, black fill
  (augment.rotate's fixed-point sources)."""
  return rotate_images(image[None], v[None])[0]


def sharpness(image, v):
  """ImageEnhance.Sharpness: a blend with ImageFilter.SMOOTH ([[1, 1, 1],
  [1, 5, 1], [1, 1, 1]] / 13, rounded; the border pixels kept)."""
  x = image.astype(jnp.float32)
  padded = jnp.pad(x, ((1, 1), (1, 1), (0, 0)))
  height, width = image.shape[:2]
  total = sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3))
  smooth = jnp.floor((total + 4 * x) / 13.0 + 0.5)
  border = jnp.zeros((height, width), bool).at[1:-1, 1:-1].set(True)
  smooth = jnp.where(border[..., None], smooth, x)
  return _blend(_clip8(smooth), image, v)


def shear_x(image, v):
  return _affine(image, (1.0, v, 0.0, 0.0, 1.0, 0.0))


def shear_y(image, v):
  return _affine(image, (1.0, 0.0, 0.0, v, 1.0, 0.0))


def solarize(image, v):
  return jnp.where(image.astype(jnp.float32) < v, image, 255 - image)


def translate_x(image, v):
  return _affine(image, (1.0, 0.0, v * image.shape[1], 0.0, 1.0, 0.0))


def translate_y(image, v):
  return _affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, v * image.shape[0]))


_FUNCTIONS = {name: globals()[name] for name, _, _ in OPS}


def apply_op(image, index, v):
  """OPS[index] at magnitude v (an op's own units, as the reference passes them)."""
  return jax.lax.switch(index, [_FUNCTIONS[name] for name, _, _ in OPS], image, v)


def cutout(image, size, x0, y0):
  """The reference's CutoutAbs: a grey square of side `size` pixels from
  (int(max(0, x0 - size / 2)), same for y), clipped to the image, drawn by
  ImageDraw.rectangle (both corners included)."""
  height, width = image.shape[:2]
  left = jnp.floor(jnp.maximum(0.0, x0 - size / 2.0))
  top = jnp.floor(jnp.maximum(0.0, y0 - size / 2.0))
  right, bottom = jnp.minimum(width, left + size), jnp.minimum(height, top + size)
  x = jnp.arange(width)[None, :]
  y = jnp.arange(height)[:, None]
  box = (x >= left) & (x <= right) & (y >= top) & (y <= bottom) & (size > 0)
  return jnp.where(box[..., None], jnp.asarray(CUTOUT_COLOR, image.dtype), image)


def _strong_one(image, key):
  op_key, magnitude_key, cutout_key = jax.random.split(key, 3)
  indices = jax.random.randint(op_key, (OPS_PER_IMAGE,), 0, len(OPS))
  fractions = jax.random.uniform(magnitude_key, (OPS_PER_IMAGE,))
  lows = jnp.asarray([low for _, low, _ in OPS], jnp.float32)
  highs = jnp.asarray([high for _, _, high in OPS], jnp.float32)
  for index, fraction in zip(indices, fractions):
    image = apply_op(image, index, lows[index] + (highs[index] - lows[index]) * fraction)
  share, x0, y0 = jax.random.uniform(cutout_key, (3,))
  height, width = image.shape[:2]
  return cutout(image, share * CUTOUT_MAX * width, x0 * width, y0 * height)


def strong_augment(images: jax.Array, keys: jax.Array) -> jax.Array:
  """[N, H, W, 3] uint8 images through MLKD's strong augmentation, one key each."""
  return jax.vmap(_strong_one)(images, keys)

