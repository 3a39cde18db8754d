r"""Launches N local processes of an entry point as one multi-process JAX run,
on loopback (127.0.0.1), each with its own simulated CPU devices: to test
multi-host code on one machine.

  python -m experiments.launch_local --num_processes=2 --devices_per_process=2 -- \
      experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/jaxreid/mh

Each process runs `python -m MODULE ARGS --multihost --coordinator_address=
127.0.0.1:PORT --num_processes=N --process_id=I` with JAX_PLATFORMS=cpu and
JAX_NUM_CPU_DEVICES set (any --xla_force_host_platform_device_count in
XLA_FLAGS is removed). Process 0's output goes to the console, the others'
nowhere; with --log_dir, each process's output goes to LOG_DIR/process_I.log.
Exits with the first non-zero exit status, 0 when all succeed.
"""

import argparse
import os
import re
import socket
import subprocess
import sys


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def process_env(devices_per_process: int, base=None) -> dict:
  """The environment of one local process: CPU only, its own device count."""
  env = dict(os.environ if base is None else base)
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+', '', env.get('XLA_FLAGS', ''))
  env['XLA_FLAGS'] = flags.strip()
  if not env['XLA_FLAGS']:
    del env['XLA_FLAGS']
  env.update(JAX_PLATFORMS='cpu', JAX_NUM_CPU_DEVICES=str(devices_per_process))
  return env


def start(module: str, args, num_processes: int, devices_per_process: int,
          log_dir: str = '', cwd=None, env=None):
  """Starts the processes; returns (processes, open log files), by process."""
  address = f'127.0.0.1:{free_port()}'
  procs, logs = [], []
  for i in range(num_processes):
    cmd = [sys.executable, '-m', module, *args, '--multihost',
           f'--coordinator_address={address}', f'--num_processes={num_processes}',
           f'--process_id={i}']
    if log_dir:
      os.makedirs(log_dir, exist_ok=True)
      logs.append(open(os.path.join(log_dir, f'process_{i}.log'), 'w'))
      out = logs[-1]
    else:
      out = None if i == 0 else subprocess.DEVNULL
    procs.append(subprocess.Popen(cmd, cwd=cwd, env=process_env(devices_per_process, env),
                                  stdout=out, stderr=subprocess.STDOUT if out else None))
  return procs, logs


def wait(procs, logs, timeout=None):
  """Waits for `start`'s processes; kills any left waiting for a dead peer.
  Returns their exit statuses, by process."""
  try:
    return [p.wait(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in logs:
      f.close()


def launch(module: str, args, num_processes: int, devices_per_process: int,
           log_dir: str = '', cwd=None, env=None, timeout=None):
  """Runs the processes to completion; returns their exit statuses, by process."""
  procs, logs = start(module, args, num_processes, devices_per_process, log_dir, cwd, env)
  return wait(procs, logs, timeout)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--num_processes', type=int, default=2)
  parser.add_argument('--devices_per_process', type=int, default=2)
  parser.add_argument('--log_dir', default='', help='write process_<i>.log files here')
  parser.add_argument('module', help='entry point module, e.g. experiments.train')
  parser.add_argument('args', nargs=argparse.REMAINDER, help='its arguments')
  a = parser.parse_args()
  statuses = launch(a.module, a.args, a.num_processes, a.devices_per_process, a.log_dir)
  bad = [s for s in statuses if s]
  if bad:
    print(f'exit statuses by process: {statuses}', file=sys.stderr)
  sys.exit(bad[0] if bad else 0)


if __name__ == '__main__':
  main()
