"""PKT (Passalis & Tefas, ECCV 2018) from a frozen teacher.

python main.py --config=configs/pkt.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py PKT: CE 1, weight 30000, on the
pooled features of the global batch.
Heads as the study's self row: --config.method=pkt_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('pkt', arg)
