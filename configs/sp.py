"""SP (Tung & Mori, ICCV 2019, similarity-preserving KD) from a frozen teacher.

python main.py --config=configs/sp.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py SP: CE 1, weight 3000, on the
deepest stage's output, Gram matrices over the global batch.
Heads as the study's self row: --config.method=sp_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('sp', arg)
