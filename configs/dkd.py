"""DKD (Zhao et al., CVPR 2022, Decoupled Knowledge Distillation) from a frozen teacher, in the study's recipe.

python main.py --config=configs/dkd.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=dkd_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): mdistiller's engine/cfg.py DKD: CE 1, alpha 1, beta 8, T 4, the DKD weight ramping
over the first 20 epochs; mixup off, as mdistiller.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('dkd', arg)
