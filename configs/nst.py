"""NST (Huang & Wang, 2017, neuron selectivity transfer) from a frozen teacher, in the study's recipe.

python main.py --config=configs/nst.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=nst_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): mdistiller's engine/cfg.py NST: CE 1, weight 50, polynomial kernel, on every
stage's output, paired as AT's.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('nst', arg)
