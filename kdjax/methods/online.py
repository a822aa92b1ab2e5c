"""Online terms: students learn from each other as they train."""
from kdjax import losses
from kdjax.methods.terms import Context, Term


def mutual(ctx: Context):
  # Peers' logits are gradient-free targets (kl_divergence stops them), so
  # each student's gradient is its own loss's.
  return ctx.config.online_weight * sum(
      losses.kl_divergence(ctx.student['logits'], peer, ctx.config.online_temperature)
      for peer in ctx.peer_logits) / len(ctx.peer_logits)


TERMS = (
    # Zhang et al. (CVPR 2018), Deep Mutual Learning: KL to every peer's logits
    Term('online', mutual, student_part='peers'),
)
