"""The GPU benchmark (experiments/bench_gpu.py) builds its table at tiny size
in an interpreter where TensorFlow, TFDS and CLU cannot be imported, as on a
JAX-only GPU machine; its peak table and flag errors. No speed is asserted."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

from experiments import bench_gpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dry_run_builds_the_table_without_tensorflow(tmp_path):
  script = tmp_path / 'dry_run.py'
  script.write_text(textwrap.dedent("""
      import sys
      for name in ('tensorflow', 'tensorflow_datasets', 'clu'):
        sys.modules[name] = None  # import fails, as where it is not installed
      from absl import flags
      from experiments import bench_gpu
      flags.FLAGS(['bench_gpu', '--dry_run', '--gpu_models=2d', '--gpu_dtypes=float32',
                   '--gpu_repeats=1'])
      rows = bench_gpu.run_gpu_benchmark(flags.FLAGS)
      loaded = [m for m in ('tensorflow', 'tensorflow_datasets', 'clu')
                if sys.modules.get(m) is not None]
      assert not loaded, loaded
      print('ROWS', len(rows))
  """))
  # One CPU device (not conftest's 8 simulated ones): the batch of 2 clips stays 2.
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  assert '| 2d | float32 | 2 x 4 x 64 x 32 |' in out.stdout, out.stdout
  assert '| n/a |' in out.stdout  # a CPU has no entry in the peak table
  # The torch row where torch is installed, else the line saying why not.
  assert '2d (torch eager)' in out.stdout or 'no PyTorch row' in out.stdout, out.stdout
  assert 'ROWS 2' in out.stdout


def test_peak_table():
  assert bench_gpu.peak_bf16('NVIDIA H200') == 989e12
  assert bench_gpu.peak_bf16('NVIDIA H200 NVL') == 835e12
  assert bench_gpu.peak_bf16('NVIDIA H100 PCIe') == 756e12
  assert bench_gpu.peak_bf16('NVIDIA H100 80GB HBM3') == 989e12
  assert bench_gpu.peak_bf16('cpu') is None


@pytest.mark.parametrize('field,value', [('gpu_models', '2d,resnet'), ('gpu_dtypes', 'fp16')])
def test_bad_list_flag_is_one_clear_line(field, value):
  flag_values = types.SimpleNamespace(gpu_models='2d', gpu_dtypes='float32', dry_run=True)
  setattr(flag_values, field, value)
  with pytest.raises(SystemExit, match=f'--{field}=.*expected a comma-separated list'):
    bench_gpu.run_gpu_benchmark(flag_values)
