"""kdjax: knowledge distillation in JAX/Flax.

Importing kdjax sets one XLA:CPU option (GPU and TPU compilers do not read it):
XLA:CPU hands convolutions to YNNPACK by default, whose convolutions made a
ResNet18 train step several times slower than XLA's own Eigen kernels on the
CPUs measured (README, Performance, has the figures and the command that
measures both). It must be set before JAX creates its CPU backend, so import
kdjax before running any JAX computation. A value already in XLA_FLAGS is kept.
"""
import os

_YNN_OPTION = '--xla_cpu_experimental_ynn_fusion_type'

if _YNN_OPTION not in os.environ.get('XLA_FLAGS', ''):
  # An empty list of fusion types: no operation goes to YNNPACK.
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN_OPTION}=".strip()
