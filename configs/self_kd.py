"""Row 4: self-distillation, ResNet18 with three intermediate heads, with mixup (target 77.89 %)."""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'self'
  config.mixup_alpha = 1.0  # as in configs/offline_kd.py
  return config
