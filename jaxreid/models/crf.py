"""CRF: CNN and RNN fusion for video re-ID ([CRF] in docs/references.md), after
McLaughlin et al.'s recurrent convolutional network (CVPR 2016; official Torch7
code niallmcl/Recurrent-Convolutional-Video-ReID).

Per frame s_t (colour, RGB or YUV, plus two optical-flow channels; section
2.1): a CNN of three (5x5 conv, 2x2 max-pool, activation) blocks with 16, 32,
32 filters and an FC layer to N = 128 gives f_t (eq. 1). A recurrent layer
o_t = W_i f_t + W_s r_{t-1}, r_t = act(o_t), r_0 = 0 (eq. 3-4) runs over the
sequence with shared weights. Temporal pooling gives the spatial feature
x_C = mean_t f_t (eq. 2) and the temporal one x_R = mean_t o_t (eq. 5); the
final feature is x_F = x_C + x_R (eq. 6). Training: the siamese loss on pairs
(eq. 7, the 'contrastive' term of ``jaxreid.losses``) plus the softmax loss of
each sequence of the pair (eq. 8-9, 'ce'), both on x_F; test: x_F of every
16-frame chunk, averaged, Euclidean distance (section 3.2).

Where the paper and McLaughlin's Torch7 code differ, the paper is the default
and the code's choice an option: ``activation`` 'relu' (paper) or 'tanh'
(code); ``input_projection`` True (eq. 3's W_i) or False (the code:
o_t = f_t + W_s r_{t-1}, the CNN's FC being W_i). The paper is silent on
input normalization, padding and dropout, so the code decides those:
``conv_padding`` 4 (Torch's ZeroPad(4) before each 5x5 convolution, maps
grow by 4), ``dropout`` 0.6 before the FC and ``recurrent_dropout`` 0.6 on
r_{t-1}; ``normalization`` 'frame' standardizes every frame's channels
(mean 0, std 1, what the code means), 'mclaughlin' reproduces the code's
(x - mean) / var^(1/4) on its [0, 1] colour and flow / 255 scales followed by
the per-frame mean subtraction after cropping ('none': no normalization).

Table 3's variants are ``branches``: 'cnn' (x_C only, no recurrent layer),
'rnn' (x_R only: McLaughlin's RCN), 'cnn_rnn' (x_F). ``region`` 'upper' /
'lower' runs the network on the top / bottom half of every frame: the
body-part models of section 2.7 (their fusion, eq. 10, is
experiments/crf_fusion.py).
"""

import dataclasses
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxreid.layers import folding
from jaxreid.layers import time_mask
from jaxreid.layers.choices import check_choice
from jaxreid.layers.kernel import Kernel
from jaxreid.models import common

COLORS = ('rgb', 'yuv')
NORMALIZATIONS = ('frame', 'mclaughlin', 'none')
ACTIVATIONS = {'relu': nn.relu, 'tanh': jnp.tanh}
BRANCHES = ('cnn', 'rnn', 'cnn_rnn')
REGIONS = ('full', 'upper', 'lower')

# RGB in [0, 1] -> YUV (BT.601, analogue form), as Torch's image.rgb2yuv:
#   Y =  0.299 R    + 0.587 G    + 0.114 B
#   U = -0.14713 R  - 0.28886 G  + 0.436 B
#   V =  0.615 R    - 0.51499 G  - 0.10001 B
RGB_TO_YUV = np.array([[0.299, 0.587, 0.114],
                       [-0.14713, -0.28886, 0.436],
                       [0.615, -0.51499, -0.10001]], np.float32)

# McLaughlin's flow PNG stores flow + 127 as 8-bit, loaded as value / 255.
MCLAUGHLIN_FLOW_SCALE = 1.0 / 255.0
_EPS = 1e-6


def _check(name: str, value, choices):
  check_choice(f'CRF {name}', value, choices)


def rgb_to_yuv(rgb):
  """(..., 3) RGB in [0, 1] -> (..., 3) YUV (``RGB_TO_YUV``)."""
  return rgb @ RGB_TO_YUV.T


def crop_region(x, region: str):
  """The body part a model sees: (B, T, H, W, C) -> the top ('upper') or
  bottom ('lower') H // 2 rows, or everything ('full')."""
  _check('region', region, REGIONS)
  half = x.shape[2] // 2
  if region == 'upper':
    return x[:, :, :half]
  if region == 'lower':
    return x[:, :, x.shape[2] - half:]
  return x


def normalize_per_frame(x, mode: str):
  """Per frame and channel normalization of (N, H, W, C) float32 inputs.

  'frame': (x - mean) / std over each frame's pixels, channel by channel.
  'mclaughlin': (x - mean) / var^(1/4) (the code's sqrt of the std), then the
  frame's mean over all channels subtracted (train.lua's doDataAug).
  'none': unchanged (colour in [0, 1], flow in pixels): keeps each frame's
  mean colour, which per-frame statistics remove.
  """
  _check('normalization', mode, NORMALIZATIONS)
  if mode == 'none':
    return x
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
  var = jnp.var(x, axis=(1, 2), keepdims=True)
  if mode == 'frame':
    return (x - mean) / jnp.sqrt(var + _EPS)
  x = (x - mean) / jnp.power(var + _EPS, 0.25)
  return x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)


class CNNOptions(nn.Module):
  """The settings of the frame CNN, which ``CRF`` takes and hands on.

  Attributes:
    filters, kernel_size, conv_padding: the CNN (16/32/32, 5x5, zero pad 4).
    activation: 'relu' (paper, CNN and eq. 4) or 'tanh' (code).
    feature_dim: N = 128.
    dropout: before the FC layer (code: 0.6).
    dtype: computation dtype; parameters and features stay float32.
  """
  filters: Sequence[int] = (16, 32, 32)
  kernel_size: int = 5
  conv_padding: int = 4
  activation: str = 'relu'
  feature_dim: int = 128
  dropout: float = 0.6
  dtype: Any = jnp.float32


class FrameCNN(CNNOptions):
  """C(s_t) of eq. 1: three (zero pad, conv, max-pool 2x2, activation) blocks,
  flatten, dropout, FC to `feature_dim` (f_t)."""

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, H, W, C)
    act = ACTIVATIONS[self.activation]
    p = self.conv_padding
    for i, width in enumerate(self.filters):
      # Torch's ZeroPad then a VALID convolution. (The same as nn.Conv's explicit
      # padding, but XLA:CPU's gradient of a convolution padded by more than
      # kernel // 2 is 5-10x slower than this.)
      x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
      x = nn.Conv(width, (self.kernel_size, self.kernel_size), padding='VALID',
                  dtype=self.dtype, name=f'conv{i + 1}')(x)  # (N, H + 2p - 4, ..., width)
      # Activation and max-pool commute (both monotone): the paper's
      # ReLU(Maxpool(Conv)) and the code's Maxpool(Tanh(Conv)) are the same map.
      x = act(nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID'))  # floor, as Torch
    x = x.reshape((x.shape[0], -1))  # (N, h * w * filters[-1])
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.feature_dim, dtype=self.dtype, name='fc')(x)  # (N, D): f_t


class RecurrentCell(nn.Module):
  """One step of eq. 3-4: o_t = W_i f_t + W_s r_{t-1}, r_t = act(o_t).

  Carry r_{t-1} (B, D), input f_t (B, D) -> (r_t, o_t). With
  `recurrent_dropout` (the code), r_{t-1} is dropped out before W_s.
  `input_projection` False is the code's o_t = f_t + W_s r_{t-1}. Eq. 3 has
  no biases (the FC producing f_t has one).
  """
  feature_dim: int = 128
  activation: str = 'relu'
  input_projection: bool = True
  recurrent_dropout: float = 0.0
  deterministic: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def weights(self, in_features: int):
    """The cell's parameters as arrays (created on first use), under the names
    and initializer of the bias-free nn.Dense layers they stand for: 'W_s'
    (D, D) and, with `input_projection`, 'W_i' (D_in, D)."""
    kernel = lambda shape, name: Kernel(shape, name=name)()
    out = {'W_s': kernel((self.feature_dim, self.feature_dim), 'W_s')}
    if self.input_projection:
      out['W_i'] = kernel((in_features, self.feature_dim), 'W_i')
    return out

  def project_inputs(self, weights, f):
    """The carry-independent term of eq. 3, W_i f_t (or f_t itself without
    `input_projection`), for any leading axes: `RecurrentLayer` computes it
    for all B * T frames in one matmul before the scan."""
    if not self.input_projection:
      return f
    return jnp.dot(f.astype(self.dtype), weights['W_i'].astype(self.dtype))

  def step(self, weights, r_prev, w_i_f, dropout_key=None):
    """Eq. 3-4 given W_i f_t: (r_{t-1}, W_i f_t) -> (r_t, o_t). `dropout_key`
    drops out r_{t-1} before W_s (None: no dropout)."""
    if dropout_key is not None:
      r_prev = _dropout(r_prev, self.recurrent_dropout, dropout_key)
    w_s = jnp.dot(r_prev.astype(self.dtype), weights['W_s'].astype(self.dtype))
    o_t = w_i_f + w_s  # eq. 3
    r_t = ACTIVATIONS[self.activation](o_t)  # eq. 4
    return r_t.astype(r_prev.dtype), o_t

  def uses_dropout(self) -> bool:
    return not self.deterministic and self.recurrent_dropout > 0.0

  def __call__(self, r_prev, f_t):
    weights = self.weights(f_t.shape[-1])
    key = self.make_rng('dropout') if self.uses_dropout() else None
    return self.step(weights, r_prev, self.project_inputs(weights, f_t), key)


class RecurrentLayer(nn.Module):
  """Eq. 3-4 scanned over time with shared weights from r_0 = 0:
  f (B, T, D) -> o (B, T, D). W_i f_t does not depend on the carry, so it is
  one (B * T, D) x (D, D) matmul before the scan; the scan does only
  W_s r_{t-1} and the activation."""
  feature_dim: int = 128
  activation: str = 'relu'
  input_projection: bool = True
  recurrent_dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, f, train: bool = False):  # (B, T, D)
    cell = RecurrentCell(self.feature_dim, self.activation, self.input_projection,
                         self.recurrent_dropout, deterministic=not train, dtype=self.dtype,
                         name='cell')
    weights = cell.weights(f.shape[-1])
    w_i_f = jnp.moveaxis(cell.project_inputs(weights, f), 1, 0)  # (T, B, D), hoisted
    # One dropout key per step (drawn here: no RNG is drawn inside the scan).
    keys = (jax.random.split(self.make_rng('dropout'), f.shape[1]) if cell.uses_dropout()
            else None)
    step = lambda r, xs: cell.step(weights, r, *xs)
    r_0 = jnp.zeros((f.shape[0], self.feature_dim), f.dtype)
    _, o = jax.lax.scan(step, r_0, (w_i_f, keys))  # (T, B, D)
    return jnp.moveaxis(o, 0, 1)  # (B, T, D)


def _dropout(x, rate: float, key):
  """nn.Dropout's training map: zero with probability `rate`, else x / (1 - rate)."""
  if rate >= 1.0:
    return jnp.zeros_like(x)
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, p=keep, shape=x.shape)
  return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


class CRF(CNNOptions):
  """CNN + RNN fusion network ([CRF] Fig. 2; docs/references.md).

  Attributes: those of ``CNNOptions`` (the CNN), and:
    num_classes: training identities (the softmax of eq. 8); 0 for none.
    color: 'yuv' (McLaughlin's input) or 'rgb'.
    use_flow: append the two optical-flow channels (the model then needs
      ``flow``; the config's ``use_flow`` makes the pipeline provide it).
    normalization: 'frame', 'mclaughlin' or 'none' (``normalize_per_frame``).
    region: 'full', 'upper' or 'lower' (section 2.7's body parts).
    branches: 'cnn_rnn' (x_F, eq. 6), 'cnn' (x_C) or 'rnn' (x_R): Table 3.
    feature: which pooled feature is the retrieval embedding: '' (the one
      `branches` trains), or 'cnn' / 'rnn' / 'cnn_rnn' to read another one
      out of a 'cnn_rnn' model.
    recurrent_dropout: on r_{t-1} before W_s (code: 0.6).
    input_projection: eq. 3's W_i (True) or the code's identity (False).
    branch_classifiers: also a softmax classifier on x_C and on x_R, returned
      as ``aux_logits`` (for the 'aux_ce' term; not in the paper, whose eq. 9
      has one softmax per sequence of the pair, on x_F).
  """
  num_classes: int = dataclasses.field(kw_only=True)
  color: str = 'yuv'
  use_flow: bool = True
  normalization: str = 'frame'
  region: str = 'full'
  branches: str = 'cnn_rnn'
  feature: str = ''
  recurrent_dropout: float = 0.6
  input_projection: bool = True
  branch_classifiers: bool = False

  # No pretrained backbone: a weights file is refused, naming the model's modules.
  load = common.load_backbone

  def _inputs(self, frames, flow):
    """uint8 frames (B, T, H, W, 3) [+ flow (B, T, H, W, 2)] -> normalized
    (B * T, H', W', 3 or 5) float32 of the configured region."""
    x = frames.astype(jnp.float32) / 255.0  # (B, T, H, W, 3) in [0, 1]
    if self.color == 'yuv':
      x = rgb_to_yuv(x)
    if self.use_flow:
      if flow is None:
        raise ValueError('CRF with use_flow=True needs the optical flow input: set '
                         'config.use_flow = True (the pipeline then adds batch["flow"]), '
                         'or config.model.use_flow = False.')
      flow = flow.astype(jnp.float32)  # (B, T, H, W, 2), pixels
      if self.normalization == 'mclaughlin':
        flow = flow * MCLAUGHLIN_FLOW_SCALE
      x = jnp.concatenate([x, flow], axis=-1)  # (B, T, H, W, 5)
    x = crop_region(x, self.region)
    return normalize_per_frame(folding.fold_time(x), self.normalization)

  sequence_parts = True  # whole-sequence evaluation (common.FRAMES / SEQUENCE)

  @nn.compact
  def __call__(self, frames, flow: Optional[Any] = None, train: bool = False, *, part=None,
               frame_mask=None):
    """Frames (B, T, H, W, 3) uint8 [+ flow] -> outputs; ``part`` common.FRAMES
    gives {'f': f_t (B, T, D)}, common.SEQUENCE takes that dict of whole
    tracklets with ``frame_mask`` (B, L) (``common.PARTS``)."""
    common.check_part(self, part, frame_mask)
    _check('color', self.color, COLORS)
    _check('normalization', self.normalization, NORMALIZATIONS)
    _check('region', self.region, REGIONS)
    _check('branches', self.branches, BRANCHES)
    _check('feature', self.feature, ('',) + BRANCHES)
    _check('activation', self.activation, tuple(ACTIVATIONS))
    if self.feature and self.feature != self.branches and self.branches != 'cnn_rnn':
      raise ValueError(f'CRF feature={self.feature!r} needs branches=cnn_rnn (a '
                       f'branches={self.branches!r} model has only that branch).')
    if part == common.SEQUENCE:
      f = frames['f']
    else:
      time_steps = frames.shape[1]
      x = self._inputs(frames, flow).astype(self.dtype)  # (B*T, H, W, C)
      f = FrameCNN(**common.fields_of(self, CNNOptions), name='cnn')(x, train)
      f = folding.unfold_time(f.astype(jnp.float32), time_steps)  # (B, T, D): f_t, eq. 1
      if part == common.FRAMES:
        return {'f': f}
    pooled = {}
    if self.branches in ('cnn', 'cnn_rnn'):
      pooled['cnn'] = time_mask.masked_time_mean(f, frame_mask)  # (B, D): x_C, eq. 2
    if self.branches in ('rnn', 'cnn_rnn'):
      # Causal: padding after a tracklet's end changes none of its steps.
      o = RecurrentLayer(self.feature_dim, self.activation, self.input_projection,
                         self.recurrent_dropout, self.dtype, name='rnn')(f, train)
      pooled['rnn'] = time_mask.masked_time_mean(o.astype(jnp.float32),
                                                 frame_mask)  # (B, D): x_R, eq. 5
    if self.branches == 'cnn_rnn':
      pooled['cnn_rnn'] = pooled['cnn'] + pooled['rnn']  # x_F, eq. 6
    trained = pooled[self.branches]
    outputs = {'pair_features': trained,  # eq. 7's x_i, x_j
               'embedding': pooled[self.feature or self.branches]}
    if self.num_classes:
      classifier = functools.partial(nn.Dense, self.num_classes, dtype=jnp.float32)
      outputs['logits'] = classifier(name='classifier')(trained)  # eq. 8
      if self.branch_classifiers and self.branches == 'cnn_rnn':
        outputs['aux_logits'] = [classifier(name='classifier_cnn')(pooled['cnn']),
                                 classifier(name='classifier_rnn')(pooled['rnn'])]
    return common.check_outputs(outputs, f.shape[0], self.num_classes)
