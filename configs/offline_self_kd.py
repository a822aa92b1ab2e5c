"""Rows 5-6: offline KD into the final classifier + self-distillation into the heads, with mixup.

python main.py --config=configs/offline_self_kd.py:repvgg_a0  (target 77.95 % top-1)
python main.py --config=configs/offline_self_kd.py:resnet50   (target 78.36 % top-1)
"""
from configs import baseline
from configs import default


def get_config(arg=None):
  config = baseline.get_config()
  config.method = 'offline_self'
  config.teacher = default.teacher_dir(arg)
  config.mixup_alpha = 1.0  # as in configs/offline_kd.py
  return config
