"""Self-distillation: intermediate heads learn from the student's own final outputs."""
from kdjax import losses
from kdjax.methods.terms import Context, Term

# config.head_labels: the CE target of the intermediate heads. 'own' is each
# example's own label before mixing (the study's code, which passes its
# unmixed labels to the heads' CE while their inputs are mixed); 'mixed' is the
# mixed distribution the final classifier gets.
HEAD_LABELS = ('own', 'mixed')
# config.self_feature_reduction: how the heads' squared feature distances are
# reduced. 'sum' over the global batch and the features is the study's (and
# Be Your Own Teacher's) feature_loss_function; 'mean' averages over the batch.
FEATURE_REDUCTIONS = ('sum', 'mean')


def heads(ctx: Context):
  """Be Your Own Teacher on the intermediate heads: each learns from the labels,
  from the final logits (T^2 KL) and from the final feature (squared L2); the
  final outputs are gradient-free targets."""
  config, outputs = ctx.config, ctx.student
  w = config.self_kd_weight
  labels = ctx.own_targets if config.head_labels == 'own' else ctx.targets
  feature_weight = config.self_feature_weight * (
      ctx.global_batch if config.self_feature_reduction == 'sum' else 1)
  total = 0.0
  for logits, feature in zip(outputs['head_logits'], outputs['head_features']):
    total += ((1 - w) * losses.soft_cross_entropy(logits, labels)
              + w * losses.kl_divergence(logits, outputs['logits'],
                                         config.self_kd_temperature)
              + feature_weight * losses.feature_l2(feature, outputs['feature']))
  return total


TERMS = (
    # Zhang et al. (ICCV 2019), Be Your Own Teacher: intermediate heads learn from
    # the final classifier
    Term('self', heads, student_part='heads'),
)
