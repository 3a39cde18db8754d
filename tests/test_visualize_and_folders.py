"""Ranked-list pictures and tracklet folders of frames (your own footage)."""

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
