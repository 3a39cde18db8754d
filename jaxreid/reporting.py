"""Plain text for the console: tables (dataset summaries, results) and log-line parts."""

from typing import Mapping, Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  """Right-aligned columns (left for the first), a rule under the header."""
  cells = [[str(h) for h in header]] + [[_cell(v) for v in row] for row in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
  def line(r):
    return '  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(r, widths)))
  rule = '-' * len(line(cells[0]))
  return '\n'.join([rule, line(cells[0]), rule] + [line(r) for r in cells[1:]] + [rule])


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.1f}'
  return str(value)


def format_results(results: Mapping, title: str = 'Results') -> str:
  """The eval_results dict as a short table of percentages."""
  names = ['rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP']
  rows = [[n, 100.0 * results[n]] for n in names if n in results]
  for name, sub in results.get('subsets', {}).items():
    rows.append([f'rank1 ({name}, {sub["num_valid_queries"]} queries)', 100.0 * sub['rank1']])
  text = format_table([title, '%'], rows)
  return (text + f'\nprotocol={results["protocol"]}  metric={results["metric"]}  '
          f'queries={results["num_query"]} (valid {results["num_valid_queries"]})  '
          f'gallery={results["num_gallery"]}')


def format_metrics(metrics: Mapping) -> str:
  """'loss=2.301 loss_ce=2.056 ...': a log line's metrics, learning rate last."""
  keys = sorted(k for k in metrics if k != 'learning_rate') + (
      ['learning_rate'] if 'learning_rate' in metrics else [])
  return ' '.join(f'{k}={metrics[k]:.6g}' for k in keys)


def format_duration(seconds: float) -> str:
  """'1:02:03' (hours:minutes:seconds), e.g. an ETA."""
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
