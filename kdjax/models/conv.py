"""2D convolution whose weight gradient XLA:CPU computes as one matrix product.

XLA:CPU's backward-filter convolution is an order of magnitude slower than its
forward one: for a 3x3, 64 -> 64 conv on 128x32x32 it took 2.5 s here against
0.22 s forward. The same gradient as one matmul per kernel tap (the input
shifted by that tap, transposed, times dy) took 0.44 s, with the same result to
float rounding. On the CPU backend `conv_general_dilated` therefore carries a
custom VJP that computes the weight gradient that way (the input gradient stays
XLA's); on GPU and TPU, and for dilated or grouped convolutions, it is
`lax.conv_general_dilated` itself. Pass it to `nn.Conv(conv_general_dilated=...)`.
"""
import functools

import jax
from jax import lax
import jax.numpy as jnp

_LAYOUT = ('NHWC', 'HWIO', 'NHWC')  # Flax's layout for 2D convolutions
# Below this many multiply-adds a convolution's time is compilation, which the
# per-tap matmuls lengthen; such small convolutions keep lax's gradient.
MIN_MACS = 2**26


def _plain(x, w, strides, padding, precision):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_LAYOUT,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, precision):
  return _plain(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision):
  return _plain(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, residuals, dy):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x_: _plain(x_, w, strides, padding, precision), x)
  dx, = input_vjp(dy)
  kh, kw, cin, cout = w.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  (sh, sw), (_, oh, ow, _) = strides, dy.shape
  dy = dy.reshape(-1, cout)
  taps = []
  for i in range(kh):
    for j in range(kw):
      # The input each output pixel saw through kernel tap (i, j).
      seen = lax.slice(x, (0, i, j, 0), (x.shape[0], i + (oh - 1) * sh + 1,
                                         j + (ow - 1) * sw + 1, cin), (1, sh, sw, 1))
      taps.append(jnp.matmul(seen.reshape(-1, cin).T, dy, precision=precision))
  return dx, jnp.stack(taps).reshape(kh, kw, cin, cout).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """lax.conv_general_dilated, with the CPU weight gradient described above."""
  plain_2d = (
      jax.default_backend() == 'cpu' and lhs.ndim == 4 and feature_group_count == 1
      and all(d == 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      and lax.conv_dimension_numbers(lhs.shape, rhs.shape, _LAYOUT) == dimension_numbers
      and lhs.shape[0] * lhs.shape[1] * lhs.shape[2] * rhs.size
      // (window_strides[0] * window_strides[1]) >= MIN_MACS)
  if not plain_2d:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision)
  if not isinstance(padding, str):
    padding = tuple(tuple(p) for p in padding)
  return _conv(lhs, rhs, tuple(window_strides), padding, precision)
