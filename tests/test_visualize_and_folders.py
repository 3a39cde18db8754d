"""Ranked-list pictures and tracklet folders of frames (your own footage)."""

import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import folders
from jaxreid.evaluation import visualize


def test_top_gallery_skips_same_camera_matches_and_junk():
  g = {'pid': np.array([7, 7, 3, -1, 7, 0]), 'camid': np.array([1, 2, 1, 2, 1, 2])}
  dist = np.array([0.1, 0.5, 0.3, 0.0, 0.2, 0.4])
  # Item 0 and 4 are pid 7 in the query's camera 1; item 3 is junk.
  np.testing.assert_array_equal(visualize.top_gallery(dist, 7, 1, g, top_k=3), [2, 5, 1])


def test_ranked_list_borders_are_green_for_correct_and_red_for_wrong():
  frames = np.full((4, 16, 8, 3), 128, np.uint8)
  image = np.asarray(visualize.ranked_list_image(
      frames, 'q', [{'frames': frames, 'correct': True, 'caption': 'a'},
                    {'frames': frames, 'correct': False, 'caption': 'b'}], frame_height=32))
  colours = {tuple(c) for c in image.reshape(-1, 3)}
  assert visualize.GREEN in colours and visualize.RED in colours and visualize.BLUE in colours
  # Left to right: query (blue) border, then the correct (green), then the wrong (red).
  row = image[visualize._GAP + visualize._CAPTION + 1]
  order = [c for c in (visualize.BLUE, visualize.GREEN, visualize.RED)
           if (row == c).all(axis=1).any()]
  firsts = [np.flatnonzero((row == c).all(axis=1))[0] for c in order]
  assert order == [visualize.BLUE, visualize.GREEN, visualize.RED] and firsts == sorted(firsts)


def test_choose_queries_worst_first_random_skip_queries_without_match():
  ap = np.array([0.5, np.nan, 0.1, 1.0, 0.1, 0.3])
  np.testing.assert_array_equal(visualize.choose_queries(ap, 'worst', 3), [2, 4, 5])
  np.testing.assert_array_equal(visualize.choose_queries(ap, 'first', 2), [0, 2])
  picked = visualize.choose_queries(ap, 'random', 3, seed=1)
  assert len(set(picked)) == 3 and 1 not in picked and list(picked) == sorted(picked)
  np.testing.assert_array_equal(picked, visualize.choose_queries(ap, 'random', 3, seed=1))
  assert len(visualize.choose_queries(ap, 'worst', 99)) == 5
  with pytest.raises(ValueError, match="valid choices: worst, first, random"):
    visualize.choose_queries(ap, 'best', 1)


def test_write_ranked_lists_draws_the_given_distances(tmp_path):
  """The pictures follow the distances passed (e.g. re-ranked ones), not features."""
  q = {'pid': np.array([1, 2]), 'camid': np.array([0, 0])}
  g = {'pid': np.array([1, 2, 3]), 'camid': np.array([1, 1, 1]),
       'source': [('gallery', 0), ('gallery', 1), ('query', 0)]}
  dist = np.array([[0.2, 0.8, 0.4], [0.9, 0.1, 0.5]])  # rows: queries 1 and 0, as drawn
  asked = []

  def frames_fn(split, tracklet, n):
    asked.append((split, tracklet))
    return np.full((n, 16, 8, 3), 100, np.uint8)

  written = visualize.write_ranked_lists(
      str(tmp_path), dist, q, g, frames_fn, queries=[1, 0], ap_per_query=[0.5, 0.25],
      first_match_rank=[2, 3], top_k=2, frames_per_tracklet=2)
  assert [os.path.basename(p) for p, _ in written] == ['query_0001_pid2.png',
                                                       'query_0000_pid1.png']
  # Query 1: nearest columns 0 then 2 (a query tracklet as a column); query 0: 1 then 2.
  assert asked == [('gallery', 0), ('query', 0), ('query', 1),
                   ('gallery', 1), ('query', 0), ('query', 0)]
  assert written[0][1].dtype == np.uint8 and written[0][1].ndim == 3


def _write_frames(folder, names):
  folder.mkdir(parents=True)
  for i, name in enumerate(names):
    Image.fromarray(np.full((8, 4, 3), i * 20, np.uint8)).save(folder / name)


def test_tracklet_folders_sorted_by_frame_number(tmp_path):
  _write_frames(tmp_path / 'b', ['f10.png', 'f9.png', 'f100.png'])
  _write_frames(tmp_path / 'a', ['x.png'])
  roots = folders.list_tracklets(str(tmp_path))
  assert [r.rsplit('/', 1)[1] for r in roots] == ['a', 'b']
  assert [p.rsplit('/', 1)[1] for p in folders._frames_in(roots[1])] == \
      ['f9.png', 'f10.png', 'f100.png']
  assert folders.list_tracklets(roots[1]) == [roots[1]]  # one tracklet folder


def test_folder_errors_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing: no such folder'):
    folders.list_tracklets(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match=r'empty: tracklet folder without frames'):
    folders.list_tracklets(str(tmp_path))
  (tmp_path / 'empty').rmdir()
  _write_frames(tmp_path / 't', ['1.png', '2.png'])
  data = (tmp_path / 't' / '2.png').read_bytes()
  (tmp_path / 't' / '2.png').write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=r't/2.png: unreadable image'):
    folders.FolderTracklets(None, str(tmp_path))
