"""Rows 2-3: offline KD from a frozen teacher, with mixup.

python main.py --config=configs/offline_kd.py:repvgg_a0  (target 77.56 % top-1)
python main.py --config=configs/offline_kd.py:resnet50   (target 77.65 % top-1)

The study's configs/modules/resnet18_with_kd.yaml (src/module.py
KDResNetModule): 0.4 CE_mix + 0.6 * 10^2 * KLDivLoss(mean) at T = 10, mixup 0.4.
"""
from configs import baseline
from kdjax import study


def get_config(arg=None):
  config = baseline.get_config()
  config.method = 'offline'  # teacher_lambda, temperature: configs/default.py's
  config.teacher = study.teacher_directory(arg)
  config.mixup_alpha = 0.4  # criterion_conf.mixup_alpha
  return config
