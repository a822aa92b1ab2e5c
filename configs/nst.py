"""NST (Huang & Wang, 2017, neuron selectivity transfer) from a frozen teacher.

python main.py --config=configs/nst.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py NST: CE 1, weight 50, polynomial
kernel, on every stage's output, paired as AT's.
Heads as the study's self row: --config.method=nst_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('nst', arg)
