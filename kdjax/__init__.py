"""kdjax: knowledge distillation in JAX/Flax.

Importing kdjax sets one XLA:CPU option, and only where JAX can run on the CPU
alone: XLA:CPU hands convolutions to YNNPACK by default, whose convolutions made
a ResNet18 train step several times slower than XLA's own Eigen kernels on the
CPUs measured (docs/performance.md has the figures and the command that
measures both). A GPU or TPU plugin is a separate build that parses XLA_FLAGS
too and aborts on a flag it does not know, so where one is installed (or
JAX_PLATFORMS names another platform) nothing is set. The option must be set
before JAX creates its CPU backend, so import kdjax before running any JAX
computation. A value already in XLA_FLAGS is kept.
"""
import importlib.metadata
import importlib.util
import os
import pkgutil

_YNN_OPTION = '--xla_cpu_experimental_ynn_fusion_type'


def _runs_on_cpu_alone() -> bool:
  """Whether JAX in this process can only use the CPU: JAX_PLATFORMS names
  nothing else, and no accelerator plugin (jax_plugins, libtpu) is installed."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return {p.strip() for p in platforms.split(',')} == {'cpu'}
  if importlib.util.find_spec('libtpu') or os.environ.get('TPU_LIBRARY_PATH'):
    return False
  if importlib.metadata.entry_points(group='jax_plugins'):
    return False
  namespace = importlib.util.find_spec('jax_plugins')
  return not (namespace and any(pkgutil.iter_modules(namespace.submodule_search_locations)))


if _runs_on_cpu_alone() and _YNN_OPTION not in os.environ.get('XLA_FLAGS', ''):
  # An empty list of fusion types: no operation goes to YNNPACK.
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN_OPTION}=".strip()

# TensorFlow only writes TensorBoard events for kdjax (through clu) and reads
# TFDS's files; its oneDNN kernels never compute anything here. Turned off,
# they are not announced on the console each time TensorFlow is imported.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
