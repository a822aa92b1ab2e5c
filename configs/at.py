"""AT (Zagoruyko & Komodakis, ICLR 2017, attention transfer) from a frozen teacher.

python main.py --config=configs/at.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py AT: CE 1, weight 1000, p 2, on
every stage's output, each student stage paired with the deepest teacher stage
of its grid.
Heads as the study's self row: --config.method=at_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('at', arg)
