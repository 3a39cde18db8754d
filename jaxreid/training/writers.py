"""Where training metrics go: TensorBoard events in the workdir.

CLU's ``SummaryWriter`` when TensorFlow is installed (the training machines that
prepare data have it). CLU's writers import TensorFlow, and many GPU machines
have none, so without it the same events are written by TensorBoard's own
TensorFlow-free event-file writer (the one PyTorch uses); without TensorBoard
either, metrics go to the console line only. The console line itself comes
from the training loop, one per log step.
"""

import os
import time
from typing import Any, Mapping

from absl import logging


class _NullWriter:
  """Drops everything: processes other than 0, or no TensorBoard installed."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    pass

  def write_hparams(self, hparams: Mapping[str, Any]):
    pass

  def write_images(self, step: int, images: Mapping[str, Any]):
    pass

  def flush(self):
    pass

  def close(self):
    pass


class EventFileWriter:
  """Scalars as TensorBoard events, with no TensorFlow: TensorBoard's own
  ``EventFileWriter`` and protos. Hyper-parameters are not written (TensorBoard's
  hparams plugin would need TensorFlow to build its summaries)."""

  def __init__(self, logdir: str):
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer import event_file_writer
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._writer = event_file_writer.EventFileWriter(logdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    values = [self._summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in scalars.items()]
    self._writer.add_event(self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=values)))

  def write_hparams(self, hparams: Mapping[str, Any]):
    del hparams

  def write_images(self, step: int, images: Mapping[str, Any]):
    """`images`: name -> (N, H, W, 3) uint8; each as a PNG image summary."""
    import io  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top
    values = []
    for tag, batch in images.items():
      for i, image in enumerate(np.asarray(batch)):
        png = io.BytesIO()
        Image.fromarray(image).save(png, format='PNG')
        values.append(self._summary_pb2.Summary.Value(
            tag=tag if len(batch) == 1 else f'{tag}/{i}',
            image=self._summary_pb2.Summary.Image(height=image.shape[0], width=image.shape[1],
                                                  colorspace=3,
                                                  encoded_image_string=png.getvalue())))
    self._writer.add_event(self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=self._summary_pb2.Summary(value=values)))

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()


def create_writer(workdir: str, enabled: bool = True):
  """A metric writer for `workdir`: ``write_scalars(step, dict)``,
  ``write_images(step, {name: (N, H, W, 3) uint8})``, ``write_hparams(dict)``,
  ``flush()``, ``close()``.

  Args:
    workdir: the run's folder; events go into it (TensorBoard: --logdir there).
    enabled: False on processes other than 0, which write nothing.
  """
  if not enabled:
    return _NullWriter()
  os.makedirs(workdir, exist_ok=True)
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  except ImportError:
    pass
  else:
    return metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir))
  try:
    return EventFileWriter(workdir)
  except ImportError:
    logging.warning('Neither TensorFlow nor TensorBoard is installed: no TensorBoard events '
                    'are written (pip install tensorboard to get them).')
    return _NullWriter()
