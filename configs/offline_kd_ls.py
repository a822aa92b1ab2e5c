"""Offline KD with logit standardization (Sun et al., CVPR 2024) from a frozen teacher.

python main.py --config=configs/offline_kd_ls.py:resnet50   (or :repvgg_a0)
The paper's CIFAR-100 KD weights (sunshangquan/logit-standardization-KD, README
and tools/train.py: --logit-stand --base-temp 2 --kd-weight 9; CE weight 0.1):
0.1 CE + 9 * 2^2 KL(z(teacher) / 2 || z(student) / 2), batch mean, z the per-example
z-score; the study's recipe otherwise, without mixup as the paper. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('offline', arg)
  config.logit_standardization = True
  config.ce_weight = 0.1
  config.kd_weight = 9.0
  config.kd_temperature = 2.0
  config.kd_reduction = 'batchmean'
  return config
