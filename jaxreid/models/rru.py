"""RRU + STIM: spatial and temporal mutual promotion (Liu, Yuan, Zhou, Li, AAAI 2019).

Per frame, a backbone gives the feature maps X_t (Inception-v3's Mixed_7c in
the paper: 8 x 8 x 2048 at 299 x 299); the Refining Recurrent Unit
(``jaxreid.layers.rru``, eq. 1-5) refines them into S_t; STIM
(``jaxreid.layers.stim``, eq. 6) integrates the refined clip into the video
feature f (256-d), used for retrieval (cosine distance in the paper) and by
the video-level batch-hard triplet L_v (eq. 8). The classifier block (Zhong
et al. 2018: FC 512, BN, ReLU, Dropout 0.5, FC) gives the identity logits of
L_c; Inception-v3's auxiliary classifier, kept by the paper, sees Mixed_6e
averaged over the clip's frames (the official code; ``aux_logits``). The part
features p^r (eq. 9) are the H horizontal strips of S averaged over W and T,
for the part-level triplet L_p (eq. 10, the 'part_triplet' loss term).

Outputs: 'embedding' = 'triplet_features' = f (B, D); 'logits' (B, N);
'part_features' (B, H, C); 'aux_logits' = [(B, N)] in train mode when the
auxiliary classifier exists (Inception-v3 with Mixed_6e maps of at least
17 x 17, i.e. frames of at least 299 x 299).

Table 1's rows are options: ``rru`` 'full' | 's' | 'c' | 'ad' | 'od' | 'none'
(RRU, RRU(s), RRU(c), RRU(ad), RRU(od), no RRU) and ``temporal`` 'stim' |
'lstm' (GAP per frame, LSTM with 256 hidden units, temporal average of its
outputs) | 'mean' (the Baseline's average pooling); the losses are config.

Where the official code (yolomax/person-reid-lib) departs from the paper,
the paper is built and the code's choice is an option: the classifier
block's activation (paper ReLU; code LeakyReLU 0.1: ``classifier_leaky_slope``).
The appearance difference is X_t - S_{t-1} (the code: S_{t-1} - X_t, the same
function with the transition kernel's first half negated).
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.backbones import inception_v3
from jaxreid.backbones import resnet
from jaxreid.layers import folding
from jaxreid.layers import rru as rru_lib
from jaxreid.layers import stim as stim_lib
from jaxreid.layers import time_mask
from jaxreid.layers.choices import check_choice
from jaxreid.models import common

# rru option -> (gate_branches, gate_input) of the RRU; 'none' skips it.
RRU_VARIANTS = {
    'full': ('sc', 'full'),  # eq. 1-5
    's': ('s', 'full'),  # RRU(s): spatial attention only
    'c': ('c', 'full'),  # RRU(c): channel attention only
    'ad': ('sc', 'ad'),  # RRU(ad): appearance difference only
    'od': ('sc', 'od'),  # RRU(od): [X_t, S_{t-1}]
    'none': None,
}
TEMPORAL_HEADS = ('stim', 'lstm', 'mean')
INCEPTION = 'inception_v3'


class ClassifierBlock(nn.Module):
  """FC - BN - ReLU - Dropout - FC (Zhong et al. 2018), the identity classifier.

  Inits as the official code's ``weights_init_kaiming`` / classifier: the
  first FC Kaiming-normal (fan_out), biases 0, the last FC N(0, 0.001).
  """
  num_classes: int
  hidden: int = 512
  dropout: float = 0.5
  leaky_slope: float = 0.0  # 0: ReLU (the paper); 0.1: the official LeakyReLU
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, f, train: bool = False):  # (B, D)
    h = nn.Dense(self.hidden, dtype=self.dtype,
                 kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                 name='fc1')(f.astype(self.dtype))
    h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, name='bn')(h)
    h = nn.leaky_relu(h, self.leaky_slope) if self.leaky_slope else nn.relu(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=nn.initializers.normal(0.001), name='fc2')(h)  # (B, N)


class RRUNet(common.BackboneModel):
  """Backbone + RRU + STIM + classifier block (+ Inception auxiliary classifier).

  Attributes: those of ``common.BackboneModel`` (``num_classes`` 0: no
  classifiers), with ``backbone`` 'inception_v3' (the paper; frames of at
  least 75 x 75, 299 x 299 in the paper) or a name in ``resnet.BACKBONES``
  (small configs; ``backbone_width`` and ``last_stride`` apply to ResNets
  only), and:
    rru: a key of ``RRU_VARIANTS``.
    temporal: 'stim' (the paper), 'lstm' or 'mean' (Table 1's alternatives).
    transition_features: RRU transition layer channels (256).
    spatial_hidden: RRU spatial branch hidden FC width (128).
    stim_features: STIM channels, the video feature's width (256).
    lstm_features: hidden size of the 'lstm' head (256).
    classifier_hidden: the classifier block's first FC (512).
    dropout: the classifier block's dropout rate (0.5).
    classifier_leaky_slope: 0 (ReLU, the paper) or 0.1 (the official code).
    aux_classifier: build Inception-v3's auxiliary classifier when the maps
      are large enough (ignored for ResNets).
    inception_transform_input: feed Inception-v3 the (x - 0.5) / 0.5 scale
      of Google's weights (the official code's normalization).
  """
  backbone: str = INCEPTION
  rru: str = 'full'
  temporal: str = 'stim'
  transition_features: int = 256
  spatial_hidden: int = 128
  stim_features: int = 256
  lstm_features: int = 256
  classifier_hidden: int = 512
  dropout: float = 0.5
  classifier_leaky_slope: float = 0.0
  aux_classifier: bool = True
  inception_transform_input: bool = True

  def _check(self):
    check_choice('rru variant', self.rru, RRU_VARIANTS)
    check_choice('temporal head', self.temporal, TEMPORAL_HEADS)
    check_choice('backbone', self.backbone, (INCEPTION,) + tuple(sorted(resnet.BACKBONES)))

  def uses_aux_classifier(self, height: int, width: int) -> bool:
    """Inception-v3's auxiliary classifier is built (needs 17 x 17 Mixed_6e maps)."""
    if self.backbone != INCEPTION or not self.aux_classifier or not self.num_classes:
      return False
    return min(inception_v3.feature_sizes(height)[1],
               inception_v3.feature_sizes(width)[1]) >= inception_v3.MIN_AUX_MAP_SIZE

  def _features(self, frames, train: bool):
    """Frames (B, T, H, W, 3) uint8 -> X (B, T, h, w, C) and the aux logits (or None)."""
    time_steps = frames.shape[1]
    x = folding.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    if self.backbone != INCEPTION:
      return folding.unfold_time(self.resnet()(x, train=train)['C5'], time_steps), None
    use_aux = self.uses_aux_classifier(frames.shape[2], frames.shape[3])
    net = inception_v3.InceptionV3(aux_classes=self.num_classes if use_aux else 0,
                                   transform_input=self.inception_transform_input,
                                   dtype=self.dtype, name=common.BACKBONE)
    # The official code averages Mixed_6e over each clip's frames before the aux head.
    clip_mean = lambda m: folding.unfold_time(m, time_steps).mean(axis=1)  # (B, 17, 17, 768)
    out = net(x, train=train, aux_transform=clip_mean)
    maps = folding.unfold_time(out['Mixed_7c'], time_steps)  # (B, T, h, w, C)
    return maps, out.get('aux_logits')

  sequence_parts = True  # whole-sequence evaluation (common.FRAMES / SEQUENCE)

  @nn.compact
  def __call__(self, frames, train: bool = False, *, part=None, frame_mask=None):
    """Frames (B, T, H, W, 3) uint8 -> outputs; ``part`` common.FRAMES gives the
    backbone maps {'maps': X (B, T, h, w, C)}, common.SEQUENCE takes that dict
    of whole tracklets with ``frame_mask`` (B, L) (``common.PARTS``)."""
    common.check_part(self, part, frame_mask)
    self._check()
    aux = None
    if part == common.SEQUENCE:
      x = frames['maps']
    else:
      x, aux = self._features(frames, train)  # X: (B, T, h, w, C)
      if part == common.FRAMES:
        return {'maps': x}
    if RRU_VARIANTS[self.rru] is None:
      s = x.astype(jnp.float32)
    else:  # causal: padding after a tracklet's end changes none of its steps
      branches, gate_input = RRU_VARIANTS[self.rru]
      s = rru_lib.RRU(self.transition_features, self.spatial_hidden, branches, gate_input,
                      dtype=self.dtype, name='rru')(x, train=train)  # S: (B, T, h, w, C)
    if frame_mask is None:
      part_features = jnp.mean(s, axis=(1, 3))  # eq. 9: (B, h, C), strips over W and T
    else:
      part_features = time_mask.masked_time_mean(jnp.mean(s, axis=3), frame_mask)
    if self.temporal == 'stim':
      f = stim_lib.STIM(self.stim_features, dtype=self.dtype, name='stim')(
          s, train, frame_mask=frame_mask)  # (B, 256)
    elif self.temporal == 'lstm':
      frame_features = jnp.mean(s, axis=(2, 3))  # (B, T, C), GAP per frame
      h = nn.RNN(nn.OptimizedLSTMCell(self.lstm_features, dtype=self.dtype),
                 name='lstm')(frame_features.astype(self.dtype))  # (B, T, 256)
      f = time_mask.masked_time_mean(h.astype(jnp.float32), frame_mask)  # temporal average
    elif frame_mask is None:  # 'mean': the Baseline's average pooling
      f = jnp.mean(s, axis=(1, 2, 3))  # (B, C)
    else:
      f = time_mask.masked_time_mean(jnp.mean(s, axis=(2, 3)), frame_mask)
    outputs = {'embedding': f, 'triplet_features': f, 'part_features': part_features}
    if self.num_classes:
      outputs['logits'] = ClassifierBlock(
          self.num_classes, self.classifier_hidden, self.dropout, self.classifier_leaky_slope,
          dtype=self.dtype, name='classifier')(f, train).astype(jnp.float32)
    if aux is not None:
      outputs['aux_logits'] = [aux.astype(jnp.float32)]
    return common.check_outputs(outputs, x.shape[0], self.num_classes)
