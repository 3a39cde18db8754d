r"""Exports a trained model's embedding function for deployment.

  python -m experiments.export --workdir=W --output=DIR [--config=FILE [--config.x=...]]

Without --config, the config the run recorded in W/config.json is used
(experiments/configs/from_workdir.py); a workdir that records none needs
--config. Writes into DIR (a new or empty folder):

  saved_model/       TensorFlow SavedModel, signature 'serving_default':
                     frames (B, T, H, W, 3) uint8 -> embedding (B, D) float32, any B
  model.onnx         the same function in ONNX: input 'frames', output 'embedding'
  export_info.json   model, input and output shapes (null: any batch size), the
                     checkpoint's step and fingerprint, the jaxreid version

The function is what evaluation computes for one clip: the newest checkpoint's
model in inference mode, no flip test-time augmentation, T = eval.clip_len (or
clip_len), the network's height x width (resize frames to it first). A model
fed optical flow (use_flow) takes a second input 'flow' (B, T, H, W, 2) float32.

How: the SavedModel by jax2tf (native serialization, the only one in this JAX;
lowered for CPU, CUDA and TPU). ONNX by jax2onnx from the model's jaxpr, a
few layers rewritten into ones it converts (docs/design.md, "Export"):
tf2onnx cannot convert a natively serialized SavedModel (its XlaCallModule
op, StableHLO inside, has no ONNX mapping).
"""

import json
import logging as python_logging
import math
import os
import shutil
import types

import jax
import numpy as np
from absl import app, flags, logging
from jax import lax
from jax.extend import core as jax_core

import jaxreid
from experiments import common

# Platforms the SavedModel runs on: the export machine's own is not enough
# for an artefact meant for other machines.
SAVED_MODEL_PLATFORMS = ('cpu', 'cuda', 'tpu')
EXPORT_FILES = ('saved_model', 'model.onnx', 'export_info.json')


def _inference_api():
  """The helpers that restore a run and embed a clip, imported in one place:
  they are moving between modules, and only this function follows them."""
  # pylint: disable=g-import-not-at-top
  from experiments import durations, inference as provenance_lib
  from experiments.configs import from_workdir
  from jaxreid import inference, sharding
  from jaxreid.training import setup, state
  return types.SimpleNamespace(
      recorded_config=from_workdir.get_config, resolve_durations=durations.resolve,
      make_mesh=sharding.make_mesh, restore=setup.restore_for_inference,
      embed=inference.embed, sample_input=state.sample_input,
      provenance=provenance_lib.provenance)


def config_and_workdir(config, workdir_flag: str):
  """(`config`, or the one the workdir recorded; the absolute workdir), after
  checking that the workdir is a folder holding a checkpoint.

  Raises:
    ValueError, FileNotFoundError: one line naming the flag.
  """
  from experiments import validate  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(os.path.expanduser(workdir_flag))
  validate.check_workdir(workdir, 'extract', workdir_flag)  # exists, is a folder
  checkpoints = os.path.join(workdir, 'checkpoints')
  if not any(n.isdigit() for n in (os.listdir(checkpoints) if os.path.isdir(checkpoints) else [])):
    splits = sorted(n for n in os.listdir(workdir) if n.startswith('split_'))
    hint = (f' (a run over all splits: export one of them, e.g. '
            f'--workdir={os.path.join(workdir_flag, splits[0])})' if splits else '')
    raise FileNotFoundError(f'--workdir={workdir_flag}: no checkpoint in {checkpoints}{hint}; '
                            f'train first with python -m experiments.train '
                            f'--workdir={workdir_flag} ...')
  if config is None:
    config = _inference_api().recorded_config(workdir)  # or one line: pass --config
  return config, workdir


def export(config, workdir: str, output: str) -> dict:
  """Writes the embedding function of `workdir`'s newest checkpoint to
  `output` (EXPORT_FILES) and returns export_info.json's contents."""
  api = _inference_api()
  jax2onnx = _import_jax2onnx()  # before any work
  output = _check_output(output)
  # No dataset is read, so durations given in epochs become steps at one step
  # per epoch (as for extract --folder): they only shape the optimizer state
  # restored beside the model, never the embedding.
  api.resolve_durations(config, per_epoch=1)
  state, meta = api.restore(config, workdir, api.make_mesh())
  # Host copies: the restored state lives on every device of the mesh.
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  samples = api.sample_input(config.eval.clip_len or config.clip_len, config.height,
                             config.width, flow=config.get('use_flow', False))
  names = list(samples)  # 'frames' first, then 'flow' if the model takes it

  def embed(variables, *inputs):  # (B, T, H, W, C) each -> (B, D) float32
    with_variables = state.replace(params=variables['params'],
                                   batch_stats=variables['batch_stats'])
    return api.embed(with_variables, dict(zip(names, inputs)), flip=False)

  dim = jax.eval_shape(embed, variables, *samples.values()).shape[-1]
  info = _export_info(config, meta, samples, dim, api.provenance(workdir, int(state.step), meta))
  partial = output + '.partial'
  shutil.rmtree(partial, ignore_errors=True)  # left by a killed export
  os.makedirs(partial)
  try:
    _write_saved_model(embed, variables, samples, os.path.join(partial, 'saved_model'))
    _write_onnx(jax2onnx, lambda *inputs: embed(variables, *inputs), samples,
                os.path.join(partial, 'model.onnx'))
    with open(os.path.join(partial, 'export_info.json'), 'w') as f:
      json.dump(info, f, indent=1)
    if os.path.isdir(output):
      os.rmdir(output)  # empty (checked): the complete export takes its place
    os.replace(partial, output)
  finally:
    shutil.rmtree(partial, ignore_errors=True)
  logging.info('Exported %s (checkpoint step %d, embedding size %d) to %s', meta['model_name'],
               int(state.step), dim, output)
  return info


def _export_info(config, meta, samples, dim: int, provenance) -> dict:
  """export_info.json: what the artefacts take and return, and where they come from."""
  return {
      'model_name': meta['model_name'], 'model': meta['model'],
      'num_classes': meta['num_classes'],
      'inputs': {k: {'shape': [None, *v.shape[1:]], 'dtype': str(v.dtype)}
                 for k, v in samples.items()},
      'outputs': {'embedding': {'shape': [None, dim], 'dtype': 'float32'}},
      'embedding_size': dim,
      # How evaluation compares embeddings, for a deployment that ranks them.
      'ranking': {'metric': config.eval.metric,
                  'normalize_features': config.eval.normalize_features},
      **provenance,  # checkpoint_workdir, checkpoint_step, checkpoint_fingerprint
      'jaxreid_version': jaxreid.__version__,
      'saved_model_platforms': list(SAVED_MODEL_PLATFORMS),
  }


def _check_output(output: str) -> str:
  """The absolute --output: a new or empty folder in an existing one, so that
  nothing is overwritten and no half-written export is left under its name."""
  path = os.path.abspath(os.path.expanduser(output))
  if not os.path.isdir(os.path.dirname(path)):
    raise FileNotFoundError(f'--output={output}: the folder {os.path.dirname(path)} does not '
                            'exist; create it first or choose another path.')
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f'--output={output}: is a file; expected a new or empty folder.')
  if os.path.isdir(path) and os.listdir(path):
    raise ValueError(f'--output={output}: is not empty; choose a new folder (the export '
                     f'writes {", ".join(EXPORT_FILES)}) or delete this one.')
  return path


def _write_saved_model(embed, variables, samples, path: str):
  """jax2tf's SavedModel of `embed(variables, *inputs)`: the variables as
  tf.Variables (not constants in the graph), the batch axis symbolic."""
  common.setup_tensorflow()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  converted = jax2tf.convert(embed, polymorphic_shapes=[None] + ['(b, ...)'] * len(samples),
                             with_gradient=False,
                             native_serialization_platforms=SAVED_MODEL_PLATFORMS)
  module = tf.Module()
  module.model_variables = tf.nest.map_structure(lambda v: tf.Variable(v, trainable=False),
                                                 variables)
  signature = [tf.TensorSpec((None, *v.shape[1:]), tf.as_dtype(v.dtype), name=k)
               for k, v in samples.items()]

  @tf.function(autograph=False, input_signature=signature)
  def serve(*inputs):
    return {'embedding': converted(module.model_variables, *inputs)}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={'serving_default': serve})


def _import_jax2onnx():
  """jax2onnx, or one line saying how to install it (an optional dependency)."""
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ValueError("Exporting to ONNX needs jax2onnx: pip install -e '.[export]' (from the "
                     f"repository root) ({e}).") from e
  # Quiet: onnx_ir warns for each constant shape; jax2onnx logs a traceback for
  # each optional plugin it cannot load (dm_pix's, with this JAX) and INFO lines.
  for name in ('onnx_ir', 'jax2onnx'):
    python_logging.getLogger(name).setLevel(python_logging.ERROR)
  return jax2onnx


def _write_onnx(jax2onnx, embed, samples, path: str):
  """jax2onnx's ONNX of `embed(*inputs)`, batch axis 'B', from its jaxpr."""
  batch, = jax.export.symbolic_shape('B')
  specs = [jax.ShapeDtypeStruct((batch, *v.shape[1:]), v.dtype) for v in samples.values()]
  # Traced here, not by jax2onnx: its patches of flax.linen functions (e.g.
  # max_pool, called with a positional window) fail on our modules, and from
  # the jaxpr it converts only primitives.
  closed = jax.make_jaxpr(embed)(*specs)
  jax2onnx.to_onnx(lambda *inputs: _eval_for_onnx(closed.jaxpr, closed.consts, *inputs)[0],
                   specs, model_name='jaxreid_embedding', input_names=list(samples),
                   output_names=['embedding'], return_mode='file', output_path=path)


def _eval_for_onnx(jaxpr, consts, *args):
  """Evaluates `jaxpr` as ``jax.core.eval_jaxpr`` does, nested jits inlined,
  with the layers jax2onnx cannot convert rewritten into ones it can: max
  pools (`_max_pool_folded`), pads (`_pad_by_concatenation`) and 3D
  convolutions (`_conv3d_as_2d_convs`). Scanned bodies are bound as they are."""
  env = {}
  read = lambda v: v.val if isinstance(v, jax_core.Literal) else env[v]
  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    inputs = [read(v) for v in eqn.invars]
    if eqn.primitive is lax.reduce_window_max_p:
      outputs = [_max_pool_folded(*inputs, **eqn.params)]
    elif eqn.primitive is lax.pad_p:
      outputs = [_pad_by_concatenation(*inputs, **eqn.params)]
    elif eqn.primitive is lax.conv_general_dilated_p and inputs[0].ndim == 5:
      outputs = [_conv3d_as_2d_convs(*inputs, **eqn.params)]
    elif eqn.primitive.name in ('jit', 'pjit'):
      inner = eqn.params['jaxpr']
      outputs = _eval_for_onnx(inner.jaxpr, inner.consts, *inputs)
    else:
      outputs = eqn.primitive.bind(*inputs, **eqn.primitive.get_bind_params(eqn.params))
      outputs = outputs if eqn.primitive.multiple_results else [outputs]
    env.update(zip(eqn.outvars, outputs))
  return [read(v) for v in jaxpr.outvars]


# reduce_window_max's settings along an axis it does not pool.
_NO_POOLING = {'window_dimensions': 1, 'window_strides': 1, 'padding': (0, 0),
               'base_dilation': 1, 'window_dilation': 1}


def _max_pool_folded(x, **params):
  """``reduce_window_max`` with the axes it does not pool folded into one.

  jax2onnx makes every operand axis a spatial axis of ONNX's MaxPool; ONNX
  Runtime pools over at most 3, so a 2D pool of NHWC maps (4 axes) fails to
  run. Moving N and C in front and merging them pools (N*C, H, W) instead:
  the same windows, the same maxima (max is exact).
  """
  def setting(d):  # what the pool does along axis d
    return tuple(tuple(params[k][d]) if k == 'padding' else params[k][d] for k in _NO_POOLING)
  pooled = [d for d in range(x.ndim) if setting(d) != tuple(_NO_POOLING.values())]
  kept = [d for d in range(x.ndim) if d not in pooled]
  if not kept or len(pooled) > 2:  # nothing to fold, or a pool ONNX Runtime cannot run anyway
    return lax.reduce_window_max_p.bind(x, **params)
  moved = lax.transpose(x, (*kept, *pooled))  # (N, C, H, W) for NHWC
  lead = moved.shape[:len(kept)]
  folded = lax.reshape(moved, (math.prod(lead), *moved.shape[len(kept):]))  # (N*C, H, W)
  pooled_params = {k: (_NO_POOLING[k], *(v[d] for d in pooled)) for k, v in params.items()}
  out = lax.reduce_window_max_p.bind(folded, **pooled_params)
  out = lax.reshape(out, (*lead, *out.shape[1:]))
  return lax.transpose(out, tuple(int(i) for i in np.argsort((*kept, *pooled))))


def _pad_by_concatenation(x, value, *, padding_config):
  """``lax.pad`` as slices and concatenations of constant blocks: jax2onnx's
  Pad fails on a symbolic (batch) axis in the padded array's shape."""
  if any(interior for _, _, interior in padding_config):
    return lax.pad(x, value, padding_config)
  for axis, (low, high, _) in enumerate(padding_config):
    if low < 0 or high < 0:  # negative padding crops
      x = lax.slice_in_dim(x, max(-low, 0), x.shape[axis] - max(-high, 0), axis=axis)
    block = lambda size: lax.broadcast_in_dim(  # pylint: disable=cell-var-from-loop
        value, (*x.shape[:axis], size, *x.shape[axis + 1:]), ())
    parts = ([block(low)] if low > 0 else []) + [x] + ([block(high)] if high > 0 else [])
    x = lax.concatenate(parts, axis) if len(parts) > 1 else x
  return x


def _conv3d_as_2d_convs(lhs, rhs, **params):
  """A 3D convolution as the sum over its temporal taps of 2D convolutions of
  strided temporal slices, time folded into the batch: jax2onnx converts only
  1D and 2D ones. The same products, summed in another order."""
  spec = params['dimension_numbers']
  if params['batch_group_count'] != 1 or any(d != 1 for d in params['lhs_dilation']):
    return lax.conv_general_dilated_p.bind(lhs, rhs, **params)
  x = lax.transpose(lhs, spec.lhs_spec)  # (N, C, D, H, W)
  kernel = lax.transpose(rhs, spec.rhs_spec)  # (O, I, KD, KH, KW)
  (low, high), stride, dilation = (params['padding'][0], params['window_strides'][0],
                                   params['rhs_dilation'][0])
  x = _pad_by_concatenation(x, np.zeros((), x.dtype),
                            padding_config=((0, 0, 0), (0, 0, 0), (low, high, 0), (0, 0, 0),
                                            (0, 0, 0)))
  taps = kernel.shape[2]
  steps = (x.shape[2] - (taps - 1) * dilation - 1) // stride + 1  # output D
  canonical = lax.ConvDimensionNumbers((0, 1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3))
  conv2d = {**params, 'dimension_numbers': canonical,
            **{k: params[k][1:] for k in ('window_strides', 'padding', 'lhs_dilation',
                                          'rhs_dilation')}}
  total = None
  for tap in range(taps):
    start = tap * dilation
    frames = lax.slice_in_dim(x, start, start + (steps - 1) * stride + 1, stride, axis=2)
    frames = lax.transpose(frames, (0, 2, 1, 3, 4))  # (N, D', C, H, W)
    n, _, c, h, w = frames.shape
    out = lax.conv_general_dilated_p.bind(lax.reshape(frames, (n * steps, c, h, w)),
                                          lax.index_in_dim(kernel, tap, 2, keepdims=False),
                                          **conv2d)  # (N D', O, H', W')
    out = lax.reshape(out, (n, steps, *out.shape[1:]))
    total = out if total is None else total + out
  total = lax.transpose(total, (0, 2, 1, 3, 4))  # (N, O, D', H', W')
  return lax.transpose(total, tuple(int(i) for i in np.argsort(spec.out_spec)))


def _define_flags():
  """The command's flags. Defined only when run as a program: the other entry
  points, imported beside this module (tests), define --config, --workdir and
  --output too, and --config is optional here."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = config_flags.DEFINE_config_file(
      'config', None, 'The config the run was trained with (experiments/configs/*.py), '
      '--config.key=value overrides; default: the one WORKDIR/config.json records.',
      lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'The training run to export (its newest '
                                'checkpoint).', required=True)
  output = flags.DEFINE_string('output', None, 'A new or empty folder for saved_model/, '
                               'model.onnx and export_info.json.', required=True)
  return config, workdir, output


def main(argv, config_flag, workdir_flag, output_flag):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config, workdir = common.run_or_exit(config_and_workdir, config_flag.value,
                                       workdir_flag.value)
  common.run_or_exit(lambda: common.check_config(config, workdir, 'extract',
                                                 uses_dataset=False))
  common.run_or_exit(export, config, workdir, output_flag.value, workdir=workdir)


if __name__ == '__main__':
  _flags = _define_flags()
  app.run(lambda argv: main(argv, *_flags), flags_parser=common.parse_flags)
