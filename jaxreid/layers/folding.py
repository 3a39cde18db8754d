"""Time folded into the batch: how per-frame layers see a clip.

A clip batch (B, T, ...) is folded to (B*T, ...) with time inner (clip b,
frame t at row b*T + t), so that 2D layers process every frame alike and
their BatchNorm statistics are shared across time (docs/design.md, "Model
contract"); temporal layers unfold it again with the clip length T.
"""


def fold_time(x):
  """(B, T, ...) -> (B*T, ...), time inner."""
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unfold_time(x, time_steps: int):
  """(B*T, ...) -> (B, T, ...) for clips of `time_steps` frames."""
  if x.shape[0] % time_steps:
    raise ValueError(f'{x.shape[0]} folded frames are not a whole number of clips of '
                     f'{time_steps} frames.')
  return x.reshape((x.shape[0] // time_steps, time_steps) + x.shape[1:])
