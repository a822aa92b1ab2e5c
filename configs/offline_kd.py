"""Rows 2-3: offline KD from a frozen teacher, with mixup.

python main.py --config=configs/offline_kd.py:repvgg_a0  (target 77.56 % top-1)
python main.py --config=configs/offline_kd.py:resnet50   (target 77.65 % top-1)
"""
from configs import baseline
from configs import default


def get_config(arg=None):
  config = baseline.get_config()
  config.method = 'offline'
  config.teacher = default.teacher_dir(arg)
  # The study mixes every distillation batch but gives no alpha; 1.0 is the mixup
  # reference code's CIFAR setting (facebookresearch/mixup-cifar10).
  config.mixup_alpha = 1.0
  return config
