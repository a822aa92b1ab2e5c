"""Feature-based terms: the student learns from the teacher's stage outputs."""
from typing import List, Sequence, Tuple

from kdjax import losses
from kdjax.methods.terms import Context, Term


def hint_source(hint_hw: Tuple[int, int], teacher_stage_shapes: Sequence[Tuple[int, ...]]) -> int:
  """Index of the teacher stage a FitNets hint of spatial size `hint_hw` matches:
  the deepest one of that size."""
  matching = [i for i, shape in enumerate(teacher_stage_shapes)
              if tuple(shape[-3:-1]) == tuple(hint_hw)]
  if not matching:
    raise ValueError(
        f'No teacher stage has the {hint_hw[0]}x{hint_hw[1]} grid of the student\'s hint '
        f'stage (teacher stages: {[tuple(s[-3:-1]) for s in teacher_stage_shapes]}); set '
        '--config.hint_stage to a student stage with a grid the teacher has.')
  return matching[-1]


def paired_stages(student_shapes: Sequence[Tuple[int, ...]],
                  teacher_shapes: Sequence[Tuple[int, ...]]) -> List[int]:
  """For each student stage, the teacher stage it learns from: the deepest one
  of the same grid (RepVGG-A0's two 32x32 stages give its second to a
  ResNet18's first), so models of different stage counts pair by resolution."""
  grids = [tuple(s[-3:-1]) for s in teacher_shapes]
  pairs = []
  for shape in student_shapes:
    grid = tuple(shape[-3:-1])
    if grid not in grids:
      raise ValueError(
          f'the student\'s {grid[0]}x{grid[1]} stage has no teacher stage of its grid '
          f'(student stages: {[tuple(s[-3:-1]) for s in student_shapes]}, teacher stages: '
          f'{grids}); pick a teacher whose stages cover the student\'s grids.')
    pairs.append(len(grids) - 1 - grids[::-1].index(grid))
  return pairs


def feature(ctx: Context):
  hint = ctx.student['hint']
  stages = ctx.teacher['stage_features']
  source = stages[hint_source(hint.shape[1:3], [s.shape for s in stages])]
  return ctx.config.hint_weight * losses.mean_squared_error(hint, source)


def stage_pairs(ctx: Context, teacher_outputs='stage_features',
                student_outputs='stage_features'):
  """(student stage, teacher stage) pairs of paired_stages: the student's
  `student_outputs` with the teacher's `teacher_outputs` ('stage_features',
  or 'stage_preact': before their last ReLU)."""
  student, teacher = ctx.student[student_outputs], ctx.teacher[teacher_outputs]
  return [(s, teacher[t]) for s, t in zip(student, stage_pairing(ctx))]


def stage_pairing(ctx: Context) -> List[int]:
  """paired_stages of the context's student and teacher."""
  return paired_stages([s.shape for s in ctx.student['stage_features']],
                       [t.shape for t in ctx.teacher['stage_features']])


def attention(ctx: Context):
  return ctx.config.at_weight * sum(losses.attention_transfer(s, t, ctx.config.at_p)
                                    for s, t in stage_pairs(ctx))


def selectivity(ctx: Context):
  return ctx.config.nst_weight * sum(losses.neuron_selectivity(s, t)
                                     for s, t in stage_pairs(ctx))


def singular(ctx: Context):
  pairs = stage_pairs(ctx)
  return ctx.config.kdsvd_weight * losses.kdsvd([s for s, _ in pairs], [t for _, t in pairs],
                                                ctx.config.kdsvd_k)


TERMS = (
    # Romero et al. (ICLR 2015), FitNets: L2 from a regressed stage to the teacher's
    Term('feature', feature, teacher=True, student_part='hint'),
    # Zagoruyko & Komodakis (ICLR 2017), attention transfer on every stage
    Term('at', attention, teacher=True, pairs_stages=True),
    # Huang & Wang (2017), neuron selectivity transfer on every stage
    Term('nst', selectivity, teacher=True, pairs_stages=True),
    # Lee et al. (ECCV 2018), KDSVD: relations of consecutive stages' singular vectors
    Term('kdsvd', singular, teacher=True, pairs_stages=True),
)
