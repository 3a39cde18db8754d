"""Results over several train/test splits (iLIDS-VID, PRID-2011: 10 each),
reported as mean and standard deviation per metric, as papers do."""

from typing import Mapping

import numpy as np

METRICS = ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')


def summarize_splits(results: Mapping[str, Mapping]) -> dict:
  """{split name: eval results} -> {'mean': {...}, 'std': {...}, 'num_splits', 'splits'}.

  The standard deviation is the population one (ddof = 0) over splits.
  """
  if not results:
    raise ValueError('No split results to summarize.')
  values = {m: np.array([r[m] for r in results.values()], np.float64) for m in METRICS}
  return {'mean': {m: float(v.mean()) for m, v in values.items()},
          'std': {m: float(v.std()) for m, v in values.items()},
          'num_splits': len(results), 'splits': dict(results)}
