"""Row 4: self-distillation, ResNet18 with three intermediate heads, with mixup (target 77.89 %).

The study's configs/modules/resnet18_self_kd.yaml (src/module.py
SelfKDResNetModule): 0.9 [CE_mix(final) + sum CE(head, own label)]
+ 0.1 sum 3^2 SoftCE(head / 3, softmax(final / 3)) + 1e-6 sum ||f_head - f||^2.
"""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'self'  # self_alpha, self_beta, temperature: configs/default.py's
  config.mixup_alpha = 0.4  # criterion_conf.mixup_alpha
  return config
