r"""Is there a gait signal a model could learn? A hand-made motion statistic on the gait twins.

The synthetic dataset's gait twins share clothes and body and differ only in
gait (cadence x1.45-1.8, stride, arm swing). This measures, without any
learning, how well one number per tracklet tells twins apart: the leg
region's motion energy, the mean over consecutive frame pairs of the mean
absolute grey-level difference in the lower 40% of the frame (as stored,
64 x 32). For every gait-twin query and every pair (gallery tracklet of its
own identity, gallery tracklet of its twin) from cameras other than the
query's, the statistic "chooses" the tracklet whose value is closer to the
query's; the accuracy over all such triplets is reported (chance: 50%), and
the same for the mean colour of the frame (appearance; twins look alike, so
about chance), and for the per-pair ordering (the faster twin's tracklets
have the higher mean energy).

  python -m experiments.gait_signal [--dataset_config=default] [--rerender]

With --rerender, the statistic is also computed on the same tracklets
rendered again by the dataset's own renderer, as stored (but not JPEG
encoded) and with each camera's nuisances off (bounding-box jitter, sensor
noise, motion blur; the 2.5% per-frame scale jitter stays, it has no
switch): how much of the weak signal is the nuisances'. The dataset is not
changed.

It also prints, from the generator's own gait parameters, the twins' gait
periods against the clip lengths T = 8 and 16 (`gait_statistics.periods`).
"""

import json

from absl import app, flags

from experiments import common
from experiments.gait_statistics import measure, periods, rendered_frames, stored_frames
from experiments.configs import synthetic_baseline

_CONFIG = flags.DEFINE_string('dataset_config', 'default', 'Synthetic dataset config.')
_OUTPUT = flags.DEFINE_string('output', '', 'Also write the numbers to this JSON file.')
_RERENDER = flags.DEFINE_boolean('rerender', False, 'Also on re-rendered tracklets, with and '
                                 'without the cameras\' nuisances (module docstring).')

def main(argv):
  del argv
  from data_pipelines.synthetic_video_reid import splits  # pylint: disable=g-import-not-at-top
  from data_pipelines.synthetic_video_reid import synthetic_video_reid_dataset_builder as b  # pylint: disable=g-import-not-at-top
  config = synthetic_baseline.get_config()
  config.dataset_config = _CONFIG.value
  params = next(c.params for c in b.Builder.BUILDER_CONFIGS if c.name == _CONFIG.value)
  plan = splits.make_split_plan(params)
  test_ids = set(plan.test_identities)
  pairs = [p for p in plan.twin_pairs if p[0] in test_ids]
  test_twins = [s for split in ('query', 'gallery') for s in plan.splits[split]
                if s.pid > 0 and s.gait_twin]
  gait = lambda identity: splits.identity_params(plan, identity).gait
  out = {'periods': periods([gait(s.identity) for s in test_twins],
                            [(gait(a), gait(b)) for a, b in pairs])}
  data = common.make_data(config, training=False)
  out['stored'] = measure(data.index, stored_frames(data), pairs)
  if _RERENDER.value:
    for name, nuisances in (('rendered', True), ('rendered_without_nuisances', False)):
      out[name] = measure(data.index, rendered_frames(plan, nuisances), pairs)
  print(json.dumps(out, indent=1))
  if _OUTPUT.value:
    with open(_OUTPUT.value, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  app.run(main)
