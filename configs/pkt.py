"""PKT (Passalis & Tefas, ECCV 2018, probabilistic knowledge transfer) from a frozen teacher, in the study's recipe.

python main.py --config=configs/pkt.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=pkt_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): mdistiller's engine/cfg.py PKT: CE 1, weight 30000, on the pooled features of the
global batch.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('pkt', arg)
