"""Relation-based terms: the student keeps the teacher's relations among the
examples of the global batch (gathered from every device, as on one)."""
from kdjax import losses
from kdjax.methods.terms import Context, Term


def relation(ctx: Context):
  student, target = ctx.gather(ctx.student['feature']), ctx.gather(ctx.teacher['feature'])
  return (ctx.config.rkd_distance_weight * losses.rkd_distance(student, target)
          + ctx.config.rkd_angle_weight * losses.rkd_angle(student, target))


def similarity(ctx: Context):
  # mdistiller's SP compares the deepest stage's outputs.
  student = ctx.gather(ctx.student['stage_features'][-1])
  target = ctx.gather(ctx.teacher['stage_features'][-1])
  return ctx.config.sp_weight * losses.similarity_preserving(student, target)


def probabilistic(ctx: Context):
  student, target = ctx.gather(ctx.student['feature']), ctx.gather(ctx.teacher['feature'])
  return ctx.config.pkt_weight * losses.probabilistic_transfer(student, target)


TERMS = (
    # Park et al. (CVPR 2019), RKD: distances and angles among pooled features
    Term('relation', relation, teacher=True),
    # Tung & Mori (ICCV 2019), similarity preserving: the batch's Gram matrices
    Term('sp', similarity, teacher=True),
    # Passalis & Tefas (ECCV 2018), probabilistic knowledge transfer
    Term('pkt', probabilistic, teacher=True),
)
