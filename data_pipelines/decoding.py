"""The one frame decoder of jaxreid, and a check that a frame decodes with it.

The train and eval pipelines (``pipeline.py``) decode frames with
``decode_image``; preparation (``video_reid_common.generate_examples``) and the
folder-of-frames reader (``folders.py``) check every frame with
``decode_error``, which runs the same decode ops with the same arguments. A
file that another library opens (PIL reads a TIFF named ``.png`` and tolerates
some corrupt JPEG bodies) but TensorFlow cannot decode is therefore reported
where it is read, by path, instead of crashing a tf.data worker many steps
later with a message that names no file.
"""

from __future__ import annotations

import re

import tensorflow as tf


def _decode_jpeg(encoded):
  return tf.io.decode_jpeg(encoded, channels=3, dct_method='INTEGER_ACCURATE')


def _decode_other(encoded):
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_image(encoded):
  """JPEG with the accurate IDCT (bit-identical to PIL/libjpeg), else PNG/BMP/GIF.

  Args:
    encoded: a scalar string tensor, the file's bytes.

  Returns:
    (H, W, 3) uint8.
  """
  return tf.cond(tf.io.is_jpeg(encoded), lambda: _decode_jpeg(encoded),
                 lambda: _decode_other(encoded))


_JPEG_START = b'\xff\xd8\xff'  # what tf.io.is_jpeg tests
# TF's error text carries op and device annotations that mean nothing to a user:
# '{{function_node __wrapped__DecodeJpeg_device_/job:...}} jpeg::Uncompress failed.
# Invalid JPEG data or crop window. [Op:DecodeJpeg] name: '.
_TF_ANNOTATION = re.compile(r'\{\{[^}]*\}\}|\[Op:[^\]]*\]|\[\[[^\]]*\]\]|\bname:\s*$')


def decode_error(data: bytes) -> str | None:
  """None if ``data`` decodes with ``decode_image``, else TensorFlow's reason, one line.

  Runs the branch of ``decode_image`` that ``tf.io.is_jpeg`` would pick (its test:
  the first three bytes are FF D8 FF) eagerly, without ``tf.cond``: the same ops
  with the same arguments, at less than half the cost per small frame. The
  pixels are discarded. Thread-safe; the decode releases the GIL.
  """
  decode = _decode_jpeg if data[:3] == _JPEG_START else _decode_other
  try:
    decode(tf.constant(data, tf.string))
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    reason = ' '.join(_TF_ANNOTATION.sub(' ', e.message.strip()).split())
    return reason or type(e).__name__
  return None
