"""Shared test setup: 4 fake CPU devices, so pmap code runs as on a 4-chip host."""
import os
import sys

# Must happen before jax is imported anywhere. Optimization level 1: XLA:CPU's
# LLVM passes take ~1.5 s per threefry random call site at the default level
# (0.2 s at level 1), which dominated the suite's time; numerics are unchanged.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4'
                           ' --xla_backend_optimization_level=1')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
