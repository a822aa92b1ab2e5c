"""Row 7: offline KD as rows 2-3, without mixup (the study's memo.md, run 31: 76.86 %).

python main.py --config=configs/offline_kd_no_mixup.py:repvgg_a0
"""
from configs import offline_kd


def get_config(arg=None):
  config = offline_kd.get_config(arg)
  config.mixup_alpha = 0.0  # criterion_conf.use_mixup: False
  return config
