"""CRD (Tian et al., ICLR 2020, contrastive representation distillation), frozen teacher.

python main.py --config=configs/crd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields): mdistiller's engine/cfg.py
CRD: CE 1, weight 0.8, embeddings of dimension 128 of the pooled features, a
memory of every training example's embeddings (momentum 0.5), 16384 negatives
of other classes per example, NCE temperature 0.07; the embeddings train with
the student, the memory is part of the train state.
Heads as the study's self row: --config.method=crd_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('crd', arg)
