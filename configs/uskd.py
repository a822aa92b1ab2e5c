"""USKD (Yang et al., ICCV 2023, unified self-knowledge distillation), no teacher.

python main.py --config=configs/uskd.py
CE + 0.1 L_target + 0.1 L_non-target + 0.1 x the weak head's label-smoothed
CE, the weak head a linear layer on the third stage's pooled output
(yzd-v/cls_KD configs/distillers/cifar100/res18_sd_cifar.py). Its recipe is
what MMEngine runs for that config: configs/_base_/schedules/cifar10_bs128.py
(SGD 0.1, momentum 0.9, weight decay 1e-4, 200 epochs, times 0.1 from epochs
100 and 150; the `optimizer` and `lr_config` keys of resnet18_8xb16_cifar100.py
are MMCV 1.x names that MMEngine's runner never reads), batch 8 x 16 = 128,
crop and flip (cifar100_bs16.py), no mixup. Mixup (--config.mixup_alpha)
takes the reference's top-2 branch. Heads as the study's self row:
--config.method=uskd_self. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'uskd'  # uskd_alpha, uskd_beta, uskd_mu: configs/default.py's
  config.update(schedule='step', learning_rate=0.1, warmup_epochs=0.0, num_epochs=200,
                decay_epochs=(100, 150), decay_rate=0.1, weight_decay=1e-4,
                rotation_degrees=0.0)
  return config
