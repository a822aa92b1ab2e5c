"""WTTM (Zheng & Yang, ICLR 2024, weighted transformed teacher matching), frozen teacher.

python main.py --config=configs/wttm.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: zkxufo/TTM's README WTTM setting (--ttm_l 0.2, -a 4;
distiller_zoo/wttm.py): CE 1, 4 x TTM's per-example KL weighted by the
teacher's power sum. The README pairs it with CRD (-b 0.8, its main loss);
this config is WTTM alone (--config.method=wttm_crd with crd_weight 0.8 adds
it). Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('wttm', arg)
  config.ttm_exponent = 0.2
  config.ttm_weight = 4.0
  return config
