"""Host ops on encoded images: decode, torchvision's training and evaluation
transforms, each random draw a function of a numpy Generator.

The training transform is torchvision's RandomResizedCrop(size, scale=(0.08,
1), ratio=(3/4, 4/3)) then RandomHorizontalFlip, which the PyTorch anchors'
ImageNet numbers come from; evaluation is Resize(size * 256 / 224) then
CenterCrop(size). Decoding is OpenCV's (libjpeg-turbo), and the resize is
anti-aliased like PIL's (torchvision's backend on PIL images): OpenCV's area
interpolation where the crop shrinks, bilinear where it grows. Only numpy and
OpenCV are imported, so grain's worker processes start quickly.
"""
import math
from typing import Tuple

import cv2
import numpy as np

SCALE = (0.08, 1.0)  # RandomResizedCrop's defaults
RATIO = (3 / 4, 4 / 3)
RESIZE_RATIO = 256 / 224  # evaluation resizes the shorter side to size x this

# One OpenCV thread per worker: the stream parallelizes over workers, and
# OpenCV's own pool would oversubscribe the cores.
cv2.setNumThreads(1)


class UndecodableImageError(ValueError):
  """Bytes that are not an image OpenCV can decode."""


def _decode_bgr(encoded: bytes) -> np.ndarray:
  image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise UndecodableImageError(f'{len(encoded)} bytes that do not decode as an image')
  return image


def _rgb(bgr: np.ndarray) -> np.ndarray:
  # The channels are swapped last, on the small output rather than the whole image.
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode(encoded: bytes) -> np.ndarray:
  """uint8 [height, width, 3] RGB pixels of an encoded image (grayscale ones
  repeated over the channels)."""
  return _rgb(_decode_bgr(encoded))


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale=SCALE, ratio=RATIO) -> Tuple[int, int, int, int]:
  """(top, left, height, width) of torchvision's RandomResizedCrop.get_params:
  up to 10 draws of an area fraction uniform in `scale` and a log-uniform
  aspect ratio in `ratio`, the first that fits placed uniformly; else the
  center crop of the largest box within `ratio`."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """`image` resized to (height, width): area interpolation (anti-aliased) if
  it shrinks on both axes, else bilinear."""
  shrinks = height <= image.shape[0] and width <= image.shape[1]
  return cv2.resize(image, (width, height),
                    interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def train_image(encoded: bytes, rng: np.random.Generator, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: RandomResizedCrop(size) then a horizontal flip with
  probability 1/2, every draw from `rng`."""
  image = _decode_bgr(encoded)
  top, left, h, w = random_resized_crop_box(rng, *image.shape[:2])
  crop = resize(image[top:top + h, left:left + w], size, size)
  return _rgb(cv2.flip(crop, 1) if rng.random() < 0.5 else crop)


def eval_image(encoded: bytes, size: int) -> np.ndarray:
  """uint8 [size, size, 3]: the shorter side resized to int(size x 256/224),
  the longer in proportion (truncated, as torchvision's Resize), then the
  center size x size crop."""
  image = _decode_bgr(encoded)
  height, width = image.shape[:2]
  short = int(size * RESIZE_RATIO)
  if height <= width:
    height, width = short, int(short * width / height)
  else:
    height, width = int(short * height / width), short
  image = resize(image, height, width)
  top, left = int(round((height - size) / 2)), int(round((width - size) / 2))
  return _rgb(image[top:top + size, left:left + size])
