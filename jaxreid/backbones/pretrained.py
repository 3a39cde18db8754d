"""ImageNet-pretrained backbones: torchvision-layout weights into Flax variables.

Files: ``.safetensors`` or ``.npz`` holding a torchvision state dict (tensor
name -> array, e.g. ``layer1.0.conv1.weight``). PyTorch pickles (``.pth``) are
refused, never unpickled (unpickling can run arbitrary code);
``experiments/convert_weights.py`` turns one into ``.safetensors`` where
PyTorch is installed.

How a tensor finds its variable (one rule for ResNet-18/34/50 and Inception-v3,
because the Flax backbones keep torchvision's module names):

  * module path: dots become levels of the Flax tree, with ResNet's two
    renamings, ``layer{i}.{j}`` -> ``layer{i}_{j}`` and ``downsample.0`` /
    ``downsample.1`` -> ``downsample_conv`` / ``downsample_bn``
    (``Mixed_6e.branch7x7_2.conv`` -> ``Mixed_6e/branch7x7_2/conv``);
  * a module with ``running_mean`` in the file is a BatchNorm:
    ``weight``/``bias`` -> params ``scale``/``bias``, ``running_mean`` /
    ``running_var`` -> batch_stats ``mean``/``var``, ``num_batches_tracked``
    is ignored;
  * other modules: ``weight`` -> ``kernel``, transposed from torch's
    (out, in, *spatial) to Flax's (*spatial, in, out) (OIHW -> HWIO, and
    OIDHW -> DHWIO for 3D convs; Linear (out, in) -> (in, out)), ``bias`` ->
    ``bias``.

The mapping is applied under a prefix of the model's variables
(``params[prefix]``, ``batch_stats[prefix]``; default ``'backbone'``), so any
model that nests a backbone can take the weights while its own heads keep
their initialization. ImageNet classifier tensors (``fc.*``, ``AuxLogits.*``)
load where the model has a variable of the same shape and are otherwise left
out without complaint (a re-ID model has its own classifier).

Missing, unexpected and misshaped tensors are reported by name; in strict mode
(the default) any of them is an error that names the file, the architecture it
holds and the one the model has. For backbones inflated from these 2D ones
(I3D, P3D, M3D; ``jaxreid/layers/temporal_conv.py``), the same names map:
``adapt=inflate_kernels`` turns a 2D kernel into the model's 3D kernel, and
``keep_init`` names the new (e.g. zero-initialized temporal) variables that
the file cannot provide.

Which backbones of a model take a file, and how, is the model's business: every
registered model has ``load(variables, weights) -> variables`` (one backbone
under 'backbone' by default, ``jaxreid/models/common.py``; both streams with
3D inflation in ``jaxreid/models/m3d.py``), and ``load_into_train_state`` runs
it for training. The code lives in ``jaxreid/backbones/weights/``, one concern
a file: ``files`` (reading), ``torch_names`` (names and layouts), ``report``
(what was loaded, messages), ``merge``, ``inflate``, ``placement``.
"""

# pylint: disable=unused-import
from jaxreid.backbones.weights.files import (CONVERT_HINT, PICKLE_SUFFIXES, PretrainedWeightsError,
                                             StateDict, load_state_dict)
from jaxreid.backbones.weights.inflate import inflate_kernels
from jaxreid.backbones.weights.merge import (CLASSIFIER_PREFIXES, DEFAULT_PREFIX, HEAD_PREFIXES,
                                             merge_backbones, merge_pretrained)
from jaxreid.backbones.weights.placement import load_into_train_state
from jaxreid.backbones.weights.report import LoadReport, describe_state_dict, describe_variables
from jaxreid.backbones.weights.torch_names import (export_torchvision, torch_to_flax_array,
                                                   torch_to_flax_name)
