"""SRD (Yang et al., ICLR 2021, softmax regression representation learning), frozen teacher.

python main.py --config=configs/srd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: jingyang2017/SRD_ossl helper/loops.py ('srd') and
KD_SRRL train_imagenet_distillation.py: a connector (1x1 conv, BN, ReLU) on
the student's last map; CE 1, the MSE of the pooled connected feature to the
teacher's, and the MSE of the teacher's classifier on it to the teacher's
logits, each weight 1; the connector trains with the student. Not a row of
the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('srd', arg)
