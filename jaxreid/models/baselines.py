"""Baselines the papers compare against.

``TemporalPooling``: a per-frame ResNet, global average pooling over space,
average pooling over time (the "TP" baseline of Gao & Nevatia 2018, used as the
2D baseline by every paper here), then the BNNeck of the strong re-ID baseline
(Luo et al. 2019): the triplet loss sees the pooled feature, the classifier
sees its batch-normalized version, and retrieval uses the latter.
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.backbones import resnet
from jaxreid.models import common


class TemporalPooling(nn.Module):
  """ResNet + spatial GAP + temporal average pooling + BNNeck + classifier.

  Attributes:
    num_classes: training identities (classifier width); 0 for no classifier.
    backbone: a name in ``resnet.BACKBONES``.
    backbone_width: channels of the backbone's stem (None or 0: the backbone's own,
      64 for the published ResNets).
    last_stride: 1 or 2 for the backbone's last stage.
    dtype: computation dtype; parameters and BN statistics stay float32.
  """
  num_classes: int
  backbone: str = 'resnet50'
  backbone_width: Optional[int] = None
  last_stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    batch_size = frames.shape[0]
    x = common.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    width = {'width': self.backbone_width} if self.backbone_width else {}
    c5 = resnet.get_backbone(self.backbone, last_stride=self.last_stride, dtype=self.dtype,
                             name='backbone', **width)(x, train=train)['C5']  # (B*T, h, w, C)
    frame_features = jnp.mean(c5.astype(jnp.float32), axis=(1, 2))  # (B*T, C)
    features = common.unfold_time(frame_features, batch_size).mean(axis=1)  # (B, C)
    # BNNeck: no shift, so the embedding stays centred (Luo et al. 2019).
    embedding = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, use_bias=False, name='bnneck')(features)
    outputs = {'embedding': embedding, 'triplet_features': features}
    if self.num_classes:
      outputs['logits'] = nn.Dense(
          self.num_classes, use_bias=False,
          kernel_init=nn.initializers.normal(0.001), name='classifier')(embedding)
    return outputs
