"""Pieces the video re-ID models share: input normalization, the fields and
backbone of a model built on a per-frame network, the BNNeck head, the output
contract, and the default weight loading.

Every registered model has ``load(variables, weights) -> variables``: it puts
a torchvision-layout state dict (``jaxreid.backbones.pretrained``) into the
backbone(s) of its freshly initialized host variables, in the spirit of
big_vision's per-model ``load``. The default, ``load_backbone``, fills the one
backbone under 'backbone'; a model with other backbones says so in its own
``load`` (``jaxreid/models/m3d.py``).
"""

import dataclasses
from typing import Any, Mapping, Optional

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxreid.backbones import pretrained
from jaxreid.backbones import resnet

# ImageNet statistics on the 0..255 scale (torchvision's), so imported
# ImageNet weights see the inputs they were trained on. NumPy float32, not
# jnp: a jnp array here would start the XLA backend at import, before
# jax.distributed.initialize() can run (--multihost).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * np.float32(255.0)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * np.float32(255.0)
# Where every model keeps its pretrained network: the optimizer's learning
# rate group (jaxreid/training/optim.py) and `load_backbone` look for it.
BACKBONE = 'backbone'


def normalize_frames(frames, dtype=jnp.float32):
  """uint8 RGB frames (..., 3) -> ImageNet-normalized floats of `dtype`.

  Frames stay uint8 until they reach the device (docs/design.md, "Data contract"): a
  quarter of the host-to-device traffic, and an exported model takes raw frames.
  """
  x = (frames.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD
  return x.astype(dtype)


def fields_of(module: nn.Module, options: type) -> dict:
  """The values `module` has for the fields of `options` (a Module class it
  inherits them from), to hand on to a submodule built from them."""
  return {f.name: getattr(module, f.name) for f in dataclasses.fields(options)
          if f.init and f.name not in ('parent', 'name')}


def load_backbone(self, variables: dict, weights: Mapping[str, np.ndarray]) -> dict:
  """The default ``load``: `weights` into the backbone under 'backbone'
  (strict; the heads keep their initialization), logging what was loaded."""
  del self
  return pretrained.merge_backbones(variables, weights, (BACKBONE,))


class BackboneModel(nn.Module):
  """A model on one per-frame backbone named 'backbone': its shared fields.

  Attributes:
    num_classes: training identities (classifier width); 0 for no classifier.
    backbone: a name in ``resnet.BACKBONES``.
    backbone_width: channels of the backbone's stem (None or 0: the
      backbone's own, 64 for the published ResNets).
    last_stride: stride of the backbone's last stage (1 or 2).
    dtype: computation dtype; parameters and BN statistics stay float32.
  """
  num_classes: int
  backbone: str = 'resnet50'
  backbone_width: Optional[int] = None
  last_stride: int = 1
  dtype: Any = jnp.float32

  load = load_backbone

  def resnet(self, **kwargs) -> nn.Module:
    """The configured ResNet (`kwargs`: its extension points, ``resnet.ResNet``)."""
    width = {'width': self.backbone_width} if self.backbone_width else {}
    return resnet.get_backbone(self.backbone, last_stride=self.last_stride, dtype=self.dtype,
                               name=BACKBONE, **width, **kwargs)


def bnneck_head(features, num_classes: int, train: bool, *, bnneck: bool = True,
                classifier_bias: bool = False,
                classifier_init=nn.initializers.normal(0.001)) -> dict:
  """The strong re-ID baseline's head (Luo et al., "Bag of tricks and a strong
  baseline for deep person re-identification", CVPRW 2019), made in the
  calling module ('bnneck', 'classifier'): the triplet loss sees `features`
  (B, D), the classifier and retrieval their BatchNorm without shift (so the
  embedding stays centred). ``bnneck=False``: both see `features`.

  Returns:
    {'triplet_features', 'embedding'} (B, D) and, with classes, 'logits' (B, N).
  """
  embedding = features
  if bnneck:
    embedding = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             use_bias=False, name='bnneck')(features)
  outputs = {'embedding': embedding, 'triplet_features': features}
  if num_classes:
    outputs['logits'] = nn.Dense(num_classes, use_bias=classifier_bias,
                                 kernel_init=classifier_init, name='classifier')(embedding)
  return outputs


# Whole-sequence evaluation (docs/design.md, "Model contract"): a model whose
# class sets ``sequence_parts = True`` takes ``part=FRAMES`` (frames -> its
# per-frame features, a dict of (B, T, ...) arrays) and ``part=SEQUENCE``
# (those features of whole tracklets, zero-padded to a common L, with
# ``frame_mask`` (B, L) bool -> its outputs, as if each tracklet were one clip
# of its own length). Without ``part`` it is both in one call, on a clip.
FRAMES, SEQUENCE = 'frames', 'sequence'
PARTS = (None, FRAMES, SEQUENCE)


def check_part(model: nn.Module, part, frame_mask) -> None:
  """Refuses a ``part`` the model does not have, or a mask without SEQUENCE."""
  if part not in PARTS:
    raise ValueError(f'part={part!r}: expected one of {PARTS}.')
  if part is not None and not getattr(model, 'sequence_parts', False):
    raise ValueError(f'{type(model).__name__} has no per-frame / sequence parts '
                     '(whole-sequence evaluation); use another eval sampler.')
  if frame_mask is not None and part != SEQUENCE:
    raise ValueError('frame_mask is only for part=SEQUENCE.')


def check_outputs(outputs: dict, batch_size: int, num_classes: int) -> dict:
  """The output contract (docs/design.md, "Model contract"), checked at trace
  time: 'embedding' (B, D); 'logits' (B, num_classes) and every entry of
  'aux_logits' / 'stream_logits' (B, N) where present; the other features
  have the batch first. Returns `outputs`."""
  chex.assert_rank(outputs['embedding'], 2)
  chex.assert_shape(outputs['embedding'], (batch_size, None))
  if 'logits' in outputs:
    chex.assert_shape(outputs['logits'], (batch_size, num_classes))
  for key in ('aux_logits', 'stream_logits'):
    for logits in outputs.get(key, ()):
      chex.assert_rank(logits, 2)
      chex.assert_shape(logits, (batch_size, None))
  for key, value in outputs.items():
    if hasattr(value, 'shape'):
      chex.assert_axis_dimension(value, 0, batch_size)
  return outputs
