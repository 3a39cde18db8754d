"""Tracklets given as folders of frames (your own footage), for extraction and
search: ``ROOT/<tracklet>/<frames>`` or a single tracklet folder ``ROOT/<frames>``.

Frames are ordered by the last number in their file name (``img_9`` before
``img_10``), then by name. Every frame is decoded once when the folder is
listed, with the decoder the pipelines use (``decoding.py``), so a file that
would fail later (truncated, corrupt, or a format TensorFlow does not read, such
as a TIFF named ``.png``, which PIL opens) is reported by name before any work
is spent.
"""

import os
import re

import numpy as np

from data_pipelines import decoding, pipeline

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


def _frame_key(name: str):
  numbers = re.findall(r'\d+', os.path.splitext(name)[0])
  return (int(numbers[-1]) if numbers else -1, name)


def _frames_in(folder: str) -> list:
  names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
  return [os.path.join(folder, n) for n in sorted(names, key=_frame_key)]


def list_tracklets(root: str) -> list:
  """The tracklet folders under `root` (or `root` itself if it holds frames).

  Raises:
    FileNotFoundError: `root` does not exist.
    ValueError: no tracklet, or a tracklet folder without frames.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{root}: no such folder; expected a folder of tracklet folders '
                            'of frames, or one tracklet folder of frames.')
  if _frames_in(root):
    return [root]
  folders = sorted(os.path.join(root, n) for n in os.listdir(root)
                   if os.path.isdir(os.path.join(root, n)))
  if not folders:
    raise ValueError(f'{root}: no frames ({", ".join(IMAGE_EXTENSIONS)}) and no tracklet '
                     'folders inside; expected ROOT/<tracklet>/<frame files>.')
  for folder in folders:
    if not _frames_in(folder):
      raise ValueError(f'{folder}: tracklet folder without frames ({", ".join(IMAGE_EXTENSIONS)}); '
                       'remove it or add its frames.')
  return folders


def _read_checked(path: str) -> bytes:
  """The file's bytes, after decoding it once as the pipeline will (ValueError if it fails)."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f'{path}: unreadable file ({e.strerror}); replace or remove it.') from None
  reason = decoding.decode_error(data)
  if reason is not None:
    raise ValueError(f'{path}: unreadable image ({reason}); expected a JPEG, PNG, BMP or GIF '
                     'file that TensorFlow decodes (the decoder the model input goes through): '
                     'convert, replace or remove the file.')
  return data


class FolderTracklets:
  """Folders of frames as an eval split named 'folder' (pid and camera -1)."""

  def __init__(self, config, root: str):
    self.config = config
    self.folders = list_tracklets(root)
    self.frames = [[_read_checked(p) for p in _frames_in(f)] for f in self.folders]

  def split_labels(self, split: str = 'folder') -> dict:
    del split
    n = len(self.folders)
    return {'pid': np.full(n, -1, np.int32), 'camid': np.full(n, -1, np.int32)}

  def eval_batches(self, split: str = 'folder'):
    del split
    labels = self.split_labels()
    return pipeline.eval_batches(self.config, np.array([len(f) for f in self.frames]),
                                 lambda t, picks: [self.frames[t][int(i)] for i in picks],
                                 labels['pid'], labels['camid'])
