"""DKD (Zhao et al., CVPR 2022, Decoupled Knowledge Distillation) from a frozen teacher.

python main.py --config=configs/dkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py DKD: CE 1, alpha 1, beta 8, T 4, the DKD weight
ramping over the first 20 epochs; no mixup, as mdistiller.
Heads as the study's self row: --config.method=dkd_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('dkd', arg)
