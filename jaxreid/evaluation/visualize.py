"""Ranked-list pictures: one PNG per query, the query clip then its top-k
gallery tracklets, each a few frames, framed green (same identity) or red.

As in the ranking metric (torchreid protocol), gallery tracklets of the query's
identity seen by the query's camera, and junk (pid -1), are left out.
"""

import os
from typing import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxreid.evaluation import distance as distance_lib

GREEN, RED, BLUE = (0, 170, 0), (220, 0, 0), (30, 80, 220)
_BORDER, _GAP, _CAPTION = 4, 8, 34


def _font(size: int):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
    return ImageFont.load_default()


def _tile(frames: np.ndarray, frame_height: int) -> Image.Image:
  """Frames (n, H, W, 3) uint8 in a 2-column grid, each scaled to `frame_height`."""
  n, h, w = frames.shape[:3]
  fw = max(1, round(w * frame_height / h))
  cols = min(2, n)
  rows = -(-n // cols)
  tile = Image.new('RGB', (cols * fw, rows * frame_height), (255, 255, 255))
  for i, frame in enumerate(frames):
    img = Image.fromarray(frame).resize((fw, frame_height), Image.BILINEAR)
    tile.paste(img, ((i % cols) * fw, (i // cols) * frame_height))
  return tile


def ranked_list_image(query_frames: np.ndarray, query_caption: str,
                      gallery: Sequence[Mapping], frame_height: int = 96) -> Image.Image:
  """Composes one ranked list.

  Args:
    query_frames: (n, H, W, 3) uint8 frames of the query tracklet.
    query_caption: text above the query.
    gallery: per rank, {'frames': (n, H, W, 3) uint8, 'correct': bool,
      'caption': str}, best first.
    frame_height: pixel height each frame is drawn at.
  Returns:
    A PIL image.
  """
  blocks = [(_tile(query_frames, frame_height), BLUE, query_caption)]
  blocks += [(_tile(g['frames'], frame_height), GREEN if g['correct'] else RED, g['caption'])
             for g in gallery]
  width = sum(b.width + 2 * _BORDER for b, _, _ in blocks) + _GAP * (len(blocks) + 2)
  height = max(b.height for b, _, _ in blocks) + 2 * _BORDER + _CAPTION + 2 * _GAP
  canvas = Image.new('RGB', (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = _font(13)
  x = _GAP
  for i, (tile, colour, caption) in enumerate(blocks):
    if i == 1:
      x += 2 * _GAP  # separate the query from its ranked list
    top = _GAP + _CAPTION
    draw.rectangle([x, top, x + tile.width + 2 * _BORDER - 1, top + tile.height + 2 * _BORDER - 1],
                   fill=colour)
    canvas.paste(tile, (x + _BORDER, top + _BORDER))
    for line, text in enumerate(caption.split('\n')[:2]):
      draw.text((x, _GAP + 15 * line), text, fill=colour if i else BLUE, font=font)
    x += tile.width + 2 * _BORDER + _GAP
  return canvas


def top_gallery(dist_row, pid: int, camid: int, g: Mapping, top_k: int) -> np.ndarray:
  """Indices of the `top_k` nearest gallery items a query is ranked against:
  same identity *and* camera, and junk (pid -1), are left out, as in ranking."""
  keep = ~((g['pid'] == pid) & (g['camid'] == camid)) & (g['pid'] != -1)
  candidates = np.flatnonzero(keep)
  return candidates[np.argsort(dist_row[candidates], kind='stable')[:top_k]]


def write_ranked_lists(out_dir: str, qf, gf, q: Mapping, g: Mapping,
                       frames_fn: Callable, *, num_queries: int, top_k: int = 10,
                       metric: str = 'euclidean', frames_per_tracklet: int = 4) -> list:
  """Writes `num_queries` ranked-list PNGs (the first queries of the split).

  Args:
    out_dir: created if needed; files are ``query_<index>_pid<pid>.png``.
    qf, gf: (Q, D), (G, D) tracklet features.
    q, g: labels with 'pid', 'camid' arrays.
    frames_fn: (split, tracklet, n) -> (n, H, W, 3) uint8 frames to show.
    num_queries, top_k: how many lists, and how long.
    metric: distance, as in evaluation.
  Returns:
    The paths written.
  """
  os.makedirs(out_dir, exist_ok=True)
  num_queries = min(num_queries, len(q['pid']))
  dist = distance_lib.pairwise_distance(qf[:num_queries], gf, metric=metric)  # (N, G)
  paths = []
  for i in range(num_queries):
    pid, cam = int(q['pid'][i]), int(q['camid'][i])
    gallery = []
    for rank, t in enumerate(top_gallery(dist[i], pid, cam, g, top_k), start=1):
      gpid = int(g['pid'][t])
      gallery.append({
          'frames': frames_fn('gallery', int(t), frames_per_tracklet),
          'correct': gpid == pid,
          'caption': f'#{rank} pid {gpid} cam {int(g["camid"][t])}\nd={dist[i, t]:.3g}'})
    image = ranked_list_image(frames_fn('query', i, frames_per_tracklet),
                              f'query {i}\npid {pid} cam {cam}', gallery)
    path = os.path.join(out_dir, f'query_{i:04d}_pid{pid}.png')
    image.save(path)
    paths.append(path)
  return paths
