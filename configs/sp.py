"""SP (Tung & Mori, ICCV 2019, similarity-preserving KD) from a frozen teacher, in the study's recipe.

python main.py --config=configs/sp.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=sp_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): mdistiller's engine/cfg.py SP: CE 1, weight 3000, on the deepest stage's
output, Gram matrices over the global batch.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('sp', arg)
