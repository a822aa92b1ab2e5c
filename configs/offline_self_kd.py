"""Rows 5-6: offline KD into the final classifier + self-distillation into the heads, with mixup.

python main.py --config=configs/offline_self_kd.py:repvgg_a0  (target 77.95 % top-1)
python main.py --config=configs/offline_self_kd.py:resnet50   (target 78.36 % top-1)
"""
from configs import offline_kd


def get_config(arg=None):
  config = offline_kd.get_config(arg)  # the same teacher, weights and mixup
  config.method = 'offline_self'
  return config
