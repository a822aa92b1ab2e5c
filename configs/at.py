"""AT (Zagoruyko & Komodakis, ICLR 2017, attention transfer) from a frozen teacher, in the study's recipe.

python main.py --config=configs/at.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=at_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): mdistiller's engine/cfg.py AT: CE 1, weight 1000, p 2, on every stage's output,
each student stage paired with the deepest teacher stage of its grid.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('at', arg)
