"""Baselines the papers compare against.

``TemporalPooling``: a per-frame ResNet, global average pooling over space,
average pooling over time (the "TP" baseline of Gao & Nevatia 2018, used as the
2D baseline by every paper here), then the BNNeck of the strong re-ID baseline
(Luo et al. 2019): the triplet loss sees the pooled feature, the classifier
sees its batch-normalized version, and retrieval uses the latter.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import folding
from jaxreid.models import common


class TemporalPooling(common.BackboneModel):
  """ResNet + spatial GAP + temporal average pooling + BNNeck + classifier.

  Attributes: those of ``common.BackboneModel``.
  """

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    batch_size, time_steps = frames.shape[:2]
    x = folding.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    c5 = self.resnet()(x, train=train)['C5']  # (B*T, h, w, C)
    frame_features = jnp.mean(c5.astype(jnp.float32), axis=(1, 2))  # (B*T, C)
    features = folding.unfold_time(frame_features, time_steps).mean(axis=1)  # (B, C)
    outputs = common.bnneck_head(features, self.num_classes, train)
    return common.check_outputs(outputs, batch_size, self.num_classes)
