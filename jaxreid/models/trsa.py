"""TRSA: temporal regularized spatial attention (Wang & Zhao; [TRSA] in docs/references.md).

Per frame: ResNet-50 with last stride 1 (16 x 8 maps of 2048 channels at
256 x 128), the parameter-free spatial attention module (eq. 1-3,
``jaxreid.layers.spatial_attention``), global average pooling; per clip:
temporal average pooling to the video feature v, then the classifier
``FC(v)`` whose logits feed the focal loss (eq. 7-8) or softmax CE. The
batch-hard triplet (eq. 6) sees v and retrieval uses v (Euclidean distance,
section 3.2). The model also returns the attention maps ``attention``
(B, T, h, w), which the temporal regularization term Reg (eq. 4, the loss term
``temporal_reg`` in ``jaxreid.losses``) needs.

The paper has no BNNeck (eq. 7 puts the FC layer on v) and there is no public
code (docs/references.md), so ``bnneck=False`` is the default;
``bnneck=True`` adds the strong baseline's BNNeck as the pooling baseline has
it (triplet on v, classifier and retrieval on BN(v)), for comparisons with it.

Table 1's rows are configurations of this one model: ``attention=False`` is
the Baseline (GAP + temporal average pooling), the loss weights add L_v,
Reg and L_f (experiments/configs/trsa_*.py).
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import folding, spatial_attention
from jaxreid.layers.choices import check_choice
from jaxreid.models import common

SPATIAL_POOLS = ('mean', 'sum')


class TRSA(common.BackboneModel):
  """ResNet + parameter-free spatial attention + GAP + TAP + classifier.

  Attributes: those of ``common.BackboneModel`` (``last_stride`` 1 in the
  paper), and:
    attention: apply the spatial attention module (SAM); False is Table 1's
      Baseline.
    attention_reduce: 'sum' (eq. 1: softmax of the channel sum) or 'mean'
      (softmax of the channel mean, i.e. temperature C).
    spatial_pool: 'mean': global average pooling of alpha * f, as Fig. 1 (the
      pooled feature is the attention-weighted average divided by h * w);
      'sum': the attention-weighted sum sum_ij alpha(i,j) f(i,j), the same
      scale as plain GAP whatever the map size. Without attention, both are
      plain GAP.
    bnneck: add a BNNeck between v and the classifier (not in the paper).
    classifier_bias: the FC layer of eq. 7 has a bias (PyTorch's nn.Linear).
  The attention softmax is float32 whatever ``dtype``.
  """
  attention: bool = True
  attention_reduce: str = 'sum'
  spatial_pool: str = 'mean'
  bnneck: bool = False
  classifier_bias: bool = True

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    check_choice('spatial_pool', self.spatial_pool, SPATIAL_POOLS)
    batch_size, time_steps = frames.shape[:2]
    x = folding.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    c5 = self.resnet()(x, train=train)['C5']  # (B*T, h, w, C)
    c5 = c5.astype(jnp.float32)
    attention = {}
    if self.attention:
      c5, alpha = spatial_attention.parameter_free_spatial_attention(
          c5, self.attention_reduce)  # (B*T, h, w, C), (B*T, h, w)
      attention['attention'] = folding.unfold_time(alpha, time_steps)  # (B, T, h, w)
    if self.attention and self.spatial_pool == 'sum':
      frame_features = jnp.sum(c5, axis=(1, 2))  # (B*T, C)
    else:
      frame_features = jnp.mean(c5, axis=(1, 2))  # (B*T, C), GAP
    features = folding.unfold_time(frame_features, time_steps).mean(axis=1)  # (B, C), TAP
    outputs = common.bnneck_head(features, self.num_classes, train, bnneck=self.bnneck,
                                 classifier_bias=self.classifier_bias)
    return common.check_outputs({**attention, **outputs}, batch_size, self.num_classes)
