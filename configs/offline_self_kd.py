"""Rows 5-6: offline KD into the final classifier + self-distillation into the heads, with mixup.

python main.py --config=configs/offline_self_kd.py:repvgg_a0  (target 77.95 % top-1)
python main.py --config=configs/offline_self_kd.py:resnet50   (target 78.36 % top-1)

The study's configs/modules/resnet18_self_with_kd.yaml (src/module.py
TeacherKDResNetModule): T = 10 for every soft term,
0.9 [CE_mix(final) + sum CE(head, own label)] + 0.1 [10^2 SoftCE(final / 10,
softmax(teacher / 10)) + sum 10^2 SoftCE(head / 10, softmax(final / 10))]
+ 1e-6 sum ||f_head - f||^2.
"""
from configs import offline_kd
from configs import self_kd


def get_config(arg=None):
  config = self_kd.get_config()
  config.method = 'offline_self'
  config.teacher = offline_kd.get_config(arg).teacher
  # self_alpha weighs the teacher's soft term too, with (1 - self_alpha) on the
  # final CE, and kd_loss_function is a soft cross-entropy (a batch mean).
  config.kd_weight = 0.1
  config.kd_temperature = 10.0
  config.kd_reduction = 'batchmean'
  config.self_kd_temperature = 10.0
  return config
