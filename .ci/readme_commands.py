"""Prints the README's quick-start commands, one per line, for .ci/run.

They are the ```sh blocks under the '## Quick start' heading, in order; each
block must hold exactly one command line. Fails loudly when there are not
exactly two, so the README and CI cannot drift apart.
"""

import re
import sys


def quick_start_commands(readme: str) -> list:
  section = re.search(r'^## Quick start\n(.*?)(?=^## )', readme, re.S | re.M)
  if not section:
    sys.exit('README.md has no "## Quick start" section.')
  blocks = re.findall(r'^```sh\n(.*?)^```', section.group(1), re.S | re.M)
  commands = []
  for block in blocks:
    lines = [l for l in block.strip().splitlines() if l.strip()]
    if len(lines) != 1:
      sys.exit(f'A quick-start block must hold one command line, found: {block!r}')
    commands.append(lines[0])
  if len(commands) != 2:
    sys.exit(f'The quick start must have exactly two commands, found {len(commands)}.')
  return commands


if __name__ == '__main__':
  with open(sys.argv[1] if len(sys.argv) > 1 else 'README.md') as f:
    print('\n'.join(quick_start_commands(f.read())))
