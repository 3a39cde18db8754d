r"""Writes a torchvision checkpoint as ``.safetensors``, the format jaxreid loads.

jaxreid never unpickles a file (loading a PyTorch pickle can run arbitrary
code), so ImageNet weights are converted once, on a machine with PyTorch (and,
for ``--arch``, torchvision):

  # A downloaded torchvision checkpoint, read with torch.load(weights_only=True):
  python -m experiments.convert_weights --input=resnet50-11ad3fa6.pth \
      --output=resnet50.safetensors
  # Or straight from torchvision.models (downloads into torch's cache):
  python -m experiments.convert_weights --arch=resnet50 --output=resnet50.safetensors
  python -m experiments.convert_weights --arch=inception_v3 --output=inception_v3.safetensors

Then train with ``--config.pretrained=resnet50.safetensors``. Checkpoints that
wrap the state dict (``{'state_dict': ...}`` or ``{'model': ...}``) or were
saved from ``nn.DataParallel`` (``module.`` prefixes) are unwrapped. Google's
Inception-v3 weights expect ``transform_input=True`` in the backbone (as
torchvision sets it for them); the file's metadata records this.
"""

import os
import sys

from absl import app, flags

from jaxreid.backbones import pretrained

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program: importing `convert` (tests, notebooks)
  # must not claim --input/--output, which other entry points also use.
  flags.DEFINE_string('input', None, 'A torchvision-layout PyTorch checkpoint (.pth).')
  flags.DEFINE_string('arch', None, 'Instead of --input: a torchvision.models name '
                      '(resnet18, resnet34, resnet50, inception_v3).')
  flags.DEFINE_string('weights', 'DEFAULT', 'With --arch: the torchvision weights enum name.')
  flags.DEFINE_string('output', None, 'Where to write the .safetensors file.')


def _unwrap(obj, source: str):
  """The state dict inside a loaded checkpoint: name -> tensor."""
  import torch  # pylint: disable=g-import-not-at-top
  for key in ('state_dict', 'model', 'model_state_dict'):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict) or not obj:
    raise ValueError(f'{source} holds no state dict (found {type(obj).__name__}).')
  tensors = {}
  for name, value in obj.items():
    if not isinstance(value, torch.Tensor):
      raise ValueError(f'{source}: entry {name!r} is a {type(value).__name__}, not a tensor; '
                       f'expected a torchvision state dict.')
    tensors[name[len('module.'):] if name.startswith('module.') else name] = value
  return tensors


def convert(output: str, input_path: str = None, arch: str = None,
            weights: str = 'DEFAULT') -> str:
  """Writes the state dict of `input_path` (or of torchvision's `arch`) to
  `output` as safetensors. Returns the architecture it holds."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('Converting needs PyTorch and safetensors: pip install torch safetensors '
                      '(a CPU build is enough).') from e
  if (input_path is None) == (arch is None):
    raise ValueError('Give exactly one of --input and --arch.')
  metadata = {'format': 'pt'}
  if input_path is not None:
    # weights_only=True: tensors and plain containers only, no arbitrary objects.
    obj = torch.load(input_path, map_location='cpu', weights_only=True)
    tensors = _unwrap(obj, input_path)
    metadata['source'] = os.path.basename(input_path)
  else:
    try:
      import torchvision  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError('--arch needs torchvision (pip install torchvision); or download the '
                        'checkpoint and pass it with --input.') from e
    model = torchvision.models.get_model(arch, weights=weights)
    tensors = dict(model.state_dict())
    metadata['source'] = f'torchvision.models.{arch}(weights={weights!r})'
  tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
  found = pretrained.describe_state_dict({k: tuple(v.shape) for k, v in tensors.items()})
  metadata['arch'] = found
  if found.startswith('inception_v3'):
    metadata['transform_input'] = 'true'  # Google's weights take (x - 0.5) / 0.5 inputs
  save_file(tensors, output, metadata=metadata)
  return found


def main(argv):
  del argv
  if not FLAGS.output:
    raise app.UsageError('--output is required.')
  if FLAGS.input and not os.path.isfile(FLAGS.input):
    sys.exit(f'error: --input={FLAGS.input}: no such file; pass a torchvision checkpoint (.pth).')
  try:
    found = convert(FLAGS.output, FLAGS.input, FLAGS.arch, FLAGS.weights)
  except (ValueError, FileNotFoundError, ImportError) as e:
    sys.exit(f'error: {e}')
  print(f'Wrote {FLAGS.output} ({found}); train with --config.pretrained={FLAGS.output}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
