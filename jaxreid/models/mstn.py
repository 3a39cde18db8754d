"""MSTN: Multi-scale Spatial-Temporal Network (Wang, He, Gao, Huang; [MSTN] in docs/references.md).

Per frame (section 3.1, Fig. 1): a ResNet (ResNet-50, last stride 2) gives
C2..C5; a 1x1 convolution on each cuts its channels (``scale_features``);
C2 and C3 are average-pooled and C5 upsampled to C4's grid (16 x 8 at
256 x 128); their concatenation is the multi-scale feature f1. f1, average
pooled over space and time, feeds its own fc layer and softmax (Loss_c, eq. 2):
``outputs['aux_logits']``, trained by the 'aux_ce' loss term.

Per clip (section 3.2): 'cut', a 1x1 convolution to 512 channels per frame;
two CLSTM blocks (eq. 1, ``jaxreid.layers.convlstm``, scanned over time), the
first block's output added to the second's; the max of each channel over the
feature map (per frame); a 1D convolution over time; the temporal feature is
its mean over time. The final feature is concat(temporal feature, pooled f1):
the batch-hard triplet (eq. 3, Loss_t) sees it ('triplet_features'), the fc
layer on it gives the logits of the label-smoothed CE (eq. 4, Loss_l), and
retrieval uses it ('embedding'). Eq. 5's sum of the three is the config's
``losses = {'aux_ce': 1, 'triplet': 1, 'ce': 1}``.

Table 1's rows are ``recurrence``: 'none' (CNN: f1 with adaptive average
pooling only), 'lstm' (CNN+LSTM: the cut features average-pooled over space,
then two ``nn.OptimizedLSTMCell`` blocks with the same residual add, the 1D
temporal convolution and mean), 'clstm' (CNN+CLSTM); +Triplet is the loss
weights (experiments/configs/mstn_synthetic.py).

What the paper leaves open and we chose (docs/mstn.md): the per-scale width
(256, as FPN), the CLSTM kernel (3 x 3) and the temporal kernel (3, 'SAME'
padding, then the mean over time, so any T works at test time), nearest
upsampling, f1 pooled by its spatial and temporal mean, no BNNeck, no
activation after 'cut' or the temporal convolution. There is no public code
(docs/references.md).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreid.layers import convlstm, folding, time_mask
from jaxreid.layers.choices import check_choice
from jaxreid.models import common

RECURRENCES = ('none', 'lstm', 'clstm')
# The paper's first stage (section 1: "the extractor is constructed to learn
# multi-scale features, which are used for the first stage training. Then, we
# extract the temporal information through the CLSTM blocks"): f1's modules
# and Loss_c's fc layer, on Loss_c (eq. 2) alone; ``config.first_stage``.
FIRST_STAGE_MODULES = ('backbone', 'reduce_c2', 'reduce_c3', 'reduce_c4', 'reduce_c5',
                       'f1_classifier')
FIRST_STAGE_LOSSES = ('aux_ce',)
UPSAMPLINGS = ('nearest', 'bilinear')
SCALES = ('C2', 'C3', 'C4', 'C5')


def to_grid(x, grid: Sequence[int], upsampling: str = 'nearest'):
  """Resamples feature maps (N, h, w, C) onto the grid (H, W).

  Larger maps whose sides are multiples of the grid's are average-pooled with
  window = stride = the ratio (C2, C3); smaller ones whose sides divide the
  grid's are upsampled by the ratio, nearest (each value repeated) or
  bilinear (C5). Other sizes (odd inputs) fall back to an anti-aliased
  linear resize.
  """
  (h, w), (gh, gw) = x.shape[1:3], tuple(grid)
  if (h, w) == (gh, gw):
    return x
  if h >= gh and w >= gw and h % gh == 0 and w % gw == 0:
    window = (h // gh, w // gw)
    return nn.avg_pool(x, window, strides=window)  # (N, gh, gw, C)
  if h <= gh and w <= gw and gh % h == 0 and gw % w == 0 and upsampling == 'nearest':
    return jnp.repeat(jnp.repeat(x, gh // h, axis=1), gw // w, axis=2)  # (N, gh, gw, C)
  return jax.image.resize(x, (x.shape[0], gh, gw, x.shape[3]), 'linear',
                          antialias=True).astype(x.dtype)


class MSTN(common.BackboneModel):
  """Multi-scale ResNet features + two residual CLSTM blocks + temporal conv.

  Attributes: those of ``common.BackboneModel`` (the paper: 'resnet50'; its
  ``num_classes`` is the width of both fc layers; ``last_stride`` 2, so C5 is
  upsampled to C4's grid, or 1: C5 is already on it), and:
    scale_features: output channels of the 1x1 convolution on each of
      C2..C5; f1 has 4x as many.
    cut_features: channels after 'cut' (the paper: 512).
    lstm_features: hidden channels of the CLSTM / LSTM blocks (512; the
      residual add needs the two blocks equal).
    recurrence: 'clstm' (the paper), 'lstm' or 'none' (Table 1).
    clstm_kernel: the CLSTM gate convolution's kernel size.
    peephole: Shi et al.'s Hadamard peepholes in the CLSTM blocks.
    forget_bias: constant added to the CLSTM forget gates.
    residual: add the first block's output to the second's (section 3.2).
    temporal_kernel: kernel of the 1D temporal convolution ('SAME' padding).
    upsampling: 'nearest' or 'bilinear' for C5.
    bnneck: a BatchNorm between the final feature and the classifier (the
      strong baseline's BNNeck; not in the paper).
  The recurrent state stays float32 whatever ``dtype``.
  """
  last_stride: int = 2
  scale_features: int = 256
  cut_features: int = 512
  lstm_features: int = 512
  recurrence: str = 'clstm'
  clstm_kernel: int = 3
  peephole: bool = False
  forget_bias: float = 0.0
  residual: bool = True
  temporal_kernel: int = 3
  upsampling: str = 'nearest'
  bnneck: bool = False

  sequence_parts = True  # whole-sequence evaluation (common.FRAMES / SEQUENCE)

  @nn.compact
  def __call__(self, frames, train: bool = False, *, part=None, frame_mask=None):
    """Frames (B, T, H, W, 3) uint8 -> outputs; ``part`` common.FRAMES gives
    {'f1': (B, T, h, w, 4S)}, common.SEQUENCE takes that dict of whole
    tracklets with ``frame_mask`` (B, L) (``common.PARTS``)."""
    common.check_part(self, part, frame_mask)
    check_choice('MSTN recurrence', self.recurrence, RECURRENCES)
    check_choice('MSTN upsampling', self.upsampling, UPSAMPLINGS)
    if self.recurrence != 'none' and self.lstm_features <= 0:
      raise ValueError(f'lstm_features must be positive; got {self.lstm_features}.')
    if part == common.SEQUENCE:
      f1 = frames['f1']
    else:
      f1 = self._multi_scale_features(frames, train)
      if part == common.FRAMES:
        return {'f1': f1}
    return self._temporal_and_heads(f1, frame_mask, train)

  def _multi_scale_features(self, frames, train: bool):
    """Section 3.1, per frame: (B, T, H, W, 3) uint8 -> f1 (B, T, h, w, 4S)."""
    time_steps = frames.shape[1]
    x = folding.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    stages = self.resnet()(x, train=train)  # C2..C5
    grid = stages['C4'].shape[1:3]  # (h, w): 16 x 8 at 256 x 128
    scales = []
    for name in SCALES:  # 1x1 conv cuts each scale's channels, then onto C4's grid
      y = nn.Conv(self.scale_features, (1, 1), dtype=self.dtype,
                  name=f'reduce_{name.lower()}')(stages[name])  # (B*T, h_i, w_i, S)
      scales.append(to_grid(y, grid, self.upsampling))  # (B*T, h, w, S)
    return folding.unfold_time(jnp.concatenate(scales, axis=-1), time_steps)  # (B, T, h, w, 4S)

  def _temporal_and_heads(self, f1, frame_mask, train: bool):
    """f1 (B, T, h, w, 4S) (T: a clip's or, with `frame_mask`, a padded
    tracklet's frames) -> the outputs: Loss_c's head and section 3.2."""
    batch_size, time_steps = f1.shape[:2]
    f1 = folding.fold_time(f1)  # (B*T, h, w, 4S)
    # Adaptive average pooling over space, then the clip's mean over time.
    f1_pooled = time_mask.masked_time_mean(folding.unfold_time(
        jnp.mean(f1.astype(jnp.float32), axis=(1, 2)), time_steps), frame_mask)  # (B, 4S)
    outputs = {'f1_features': f1_pooled}
    if self.num_classes:  # Loss_c's fc layer (eq. 2)
      outputs['aux_logits'] = [nn.Dense(self.num_classes, name='f1_classifier')(f1_pooled)]

    # --- Temporal information extractor (section 3.2) --------------------------
    # The recurrences are causal, so padding after a tracklet's end changes
    # none of its steps; the temporal convolution and the mean are masked.
    if self.recurrence == 'none':  # Table 1 'CNN'
      final = f1_pooled
    else:
      cut = nn.Conv(self.cut_features, (1, 1), dtype=self.dtype, name='cut')(f1)  # (B*T, h, w, 512)
      cut = folding.unfold_time(cut, time_steps)  # (B, T, h, w, 512)
      if self.recurrence == 'clstm':
        block = lambda name: convlstm.ConvLSTM(
            self.lstm_features, kernel_size=(self.clstm_kernel,) * 2, peephole=self.peephole,
            forget_bias=self.forget_bias, dtype=self.dtype, name=name)
        h1 = block('clstm1')(cut)  # (B, T, h, w, F)
        h2 = block('clstm2')(h1)  # (B, T, h, w, F)
        s = h1 + h2 if self.residual else h2  # residual add against degradation
        s = jnp.max(s, axis=(2, 3))  # (B, T, F): the max of each channel
      else:  # 'lstm': Table 1 'CNN+LSTM', on spatially averaged features
        v = jnp.mean(cut.astype(jnp.float32), axis=(2, 3))  # (B, T, 512)
        block = lambda name: nn.RNN(nn.OptimizedLSTMCell(self.lstm_features, parent=None),
                                    name=name)  # the cell is bound inside the RNN
        h1 = block('lstm1')(v)  # (B, T, F)
        h2 = block('lstm2')(h1)  # (B, T, F)
        s = h1 + h2 if self.residual else h2
      # 1D convolution over time; 'SAME' padding and the mean make it any-T.
      s = time_mask.zero_padding_steps(s.astype(jnp.float32), frame_mask)
      temporal = nn.Conv(self.lstm_features, (self.temporal_kernel,), padding='SAME',
                         name='temporal_conv')(s)  # (B, T, F)
      temporal = time_mask.masked_time_mean(temporal, frame_mask)  # (B, F)
      outputs['temporal_features'] = temporal
      final = jnp.concatenate([temporal, f1_pooled], axis=-1)  # (B, F + 4S)
    # Loss_t sees the final feature, Loss_l (label-smoothed CE, eq. 4) the fc
    # layer on it (nn.Dense's own initialization and bias).
    outputs.update(common.bnneck_head(final, self.num_classes, train, bnneck=self.bnneck,
                                      classifier_bias=True,
                                      classifier_init=nn.linear.default_kernel_init))
    return common.check_outputs(outputs, batch_size, self.num_classes)
