"""Row 1 of the results table: ResNet18, cross-entropy, no mixup (target 74.40 % top-1).

The study's configs/modules/resnet18.yaml (src/module.py ResNetModule): every
setting is configs/default.py's, which are the study's.
"""
from configs import default


def get_config(arg=None):
  config = default.get_config(arg)
  config.method = 'baseline'
  config.mixup_alpha = 0.0
  return config
