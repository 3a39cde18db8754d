"""Reading weights files: ``.safetensors`` or ``.npz`` holding a torchvision
state dict; PyTorch pickles are refused, never unpickled (unpickling can run
arbitrary code)."""

import json
import os
import re
import struct
import zipfile
from typing import Dict, Mapping, Optional, Union

import numpy as np

# Extensions of PyTorch's pickle-based checkpoints.
PICKLE_SUFFIXES = ('.pth', '.pt', '.pth.tar', '.pt.tar', '.tar', '.ckpt', '.bin', '.pkl',
                   '.pickle')
CONVERT_HINT = ('convert it once where PyTorch is installed: python -m experiments.convert_weights '
                '--input={path} --output={stem}.safetensors')

Path = Union[str, os.PathLike]


class PretrainedWeightsError(ValueError):
  """A weights file cannot be read or does not fit the model."""


class StateDict(dict):
  """A state dict (tensor name -> np.ndarray) that remembers where it came
  from, so that every message about fitting it names the file: ``source``
  (the path, or '<state dict>') and the file's ``metadata``."""

  def __init__(self, tensors: Mapping[str, np.ndarray], source: str = '<state dict>',
               metadata: Optional[Mapping[str, str]] = None):
    super().__init__(tensors)
    self.source = source
    self.metadata = dict(metadata or {})


def load_state_dict(path: Path) -> StateDict:
  """Reads a torchvision-layout state dict from ``.safetensors`` or ``.npz``.

  Raises:
    FileNotFoundError: no such file.
    PretrainedWeightsError: a PyTorch pickle (never unpickled), an unknown
      format, or a damaged or truncated file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Pretrained weights file {path} does not exist.')
  with open(path, 'rb') as f:
    magic = f.read(4)
  lower = path.lower()
  if lower.endswith(PICKLE_SUFFIXES) or _is_pickle(path, magic):
    stem = re.sub(r'(\.pth\.tar|\.pt\.tar|\.[^./]+)$', '', path)
    raise PretrainedWeightsError(
        f'{path} is a PyTorch pickle checkpoint; jaxreid reads weights only from .safetensors '
        f'or .npz files and never unpickles (loading a pickle can run arbitrary code). To use '
        f'it, ' + CONVERT_HINT.format(path=path, stem=stem) + '.')
  if lower.endswith('.npz'):
    return StateDict(_read_npz(path), path)
  if lower.endswith('.safetensors'):
    return StateDict(*_read_safetensors(path))
  raise PretrainedWeightsError(
      f'{path}: unknown weights format (expected a .safetensors or .npz file holding a '
      f'torchvision state dict); for a PyTorch checkpoint, '
      + CONVERT_HINT.format(path=path, stem=os.path.splitext(path)[0]) + '.')


def _is_pickle(path: str, magic: bytes) -> bool:
  """A pickle (PyTorch's legacy format) or a zip holding one (torch.save's)."""
  if magic[:1] == b'\x80' and magic[1:2] in (b'\x02', b'\x03', b'\x04', b'\x05'):
    return True
  if magic == b'PK\x03\x04':
    try:
      with zipfile.ZipFile(path) as z:
        return any(n.endswith('.pkl') for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
      return False
  return False


def _truncated(path: str, detail: str) -> PretrainedWeightsError:
  return PretrainedWeightsError(
      f'{path} is damaged or truncated ({detail}); an interrupted download or copy does this. '
      f'Copy or convert the file again (python -m experiments.convert_weights).')


def _read_npz(path: str) -> Dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: np.asarray(z[k]) for k in z.files}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise _truncated(path, f'not a readable .npz archive: {e}') from e


def _read_safetensors(path: str):
  """(tensors, path, metadata) of a safetensors file."""
  # Check the header against the file size first: the library's own errors
  # for a cut file ("MetadataIncompleteBuffer") do not say what happened.
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(8)
    if len(head) < 8:
      raise _truncated(path, f'{size} bytes, shorter than a safetensors header')
    header_len = struct.unpack('<Q', head)[0]
    if 8 + header_len > size:
      raise _truncated(path, f'its header announces {header_len} bytes of metadata, the file '
                             f'has {size} bytes in all')
    try:
      header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise PretrainedWeightsError(f'{path} is not a safetensors file (unreadable header: '
                                   f'{e}).') from e
  metadata = header.pop('__metadata__', None) or {}
  end = max((int(v['data_offsets'][1]) for v in header.values()), default=0)
  if 8 + header_len + end > size:
    raise _truncated(path, f'its header describes {8 + header_len + end} bytes, the file has '
                           f'{size}')
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('Reading .safetensors files needs the safetensors package: '
                      'pip install safetensors') from e
  try:
    return dict(load_file(path)), path, dict(metadata)
  except Exception as e:  # pylint: disable=broad-except
    raise PretrainedWeightsError(f'{path}: cannot read it as safetensors ({e}).') from e
