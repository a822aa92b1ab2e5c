"""Feature-based offline KD: FitNets hints from a frozen teacher, with mixup.

python main.py --config=configs/feature_kd.py:resnet50  (or :repvgg_a0)
Add intermediate heads with --config.method=feature_self.
"""
from configs import offline_kd


def get_config(arg=None):
  config = offline_kd.get_config(arg)  # the same teacher and mixup
  config.dtype = 'auto'  # not a row of the study: bfloat16 on accelerators
  config.method = 'feature'
  return config
