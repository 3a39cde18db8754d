"""Ranked-list pictures: one PNG per query, the query clip then its top-k
gallery tracklets, each a few frames, framed green (same identity) or red.
The query's caption gives its AP and the rank of its first true match; the
queries drawn are the worst by AP, the first, or a random sample
(``choose_queries``), ranked by the distances the protocol used.

As in the ranking metric (torchreid protocol), gallery tracklets of the query's
identity seen by the query's camera, and junk (pid -1), are left out.
"""

import os
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


QUERY_CHOICES = ('worst', 'first', 'random')


def choose_queries(ap_per_query, how: str, num: int, seed: int = 0) -> np.ndarray:
  """Indices of the `num` queries to draw, among those with a match (AP not NaN).

  Args:
    ap_per_query: (Q,) AP of each query, NaN where it was skipped.
    how: 'worst' (lowest AP first, ties in split order), 'first' (split
      order) or 'random' (a `seed`-fixed sample, in split order).
  """
  if how not in QUERY_CHOICES:
    raise ValueError(f'Unknown ranked-list choice {how!r}; valid choices: '
                     f'{", ".join(QUERY_CHOICES)}.')
  ap = np.asarray(ap_per_query, np.float64)
  valid = np.flatnonzero(~np.isnan(ap))
  if how == 'worst':
    return valid[np.argsort(ap[valid], kind='stable')][:num]
  if how == 'random':
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(valid, size=min(num, len(valid)), replace=False))
  return valid[:num]


def write_ranked_lists(out_dir: str, dist, q: Mapping, g: Mapping, frames_fn: Callable, *,
                       queries: Sequence[int], ap_per_query, first_match_rank,
                       name_fn: Optional[Callable] = None, top_k: int = 10,
                       frames_per_tracklet: int = 4) -> list:
  """Writes one ranked-list PNG per query of `queries`.

  Args:
    out_dir: created if needed; files are ``query_<index>_pid<pid>.png``.
    dist: (len(queries), G) the distances the protocol ranked (after
      re-ranking when it is on), one row per entry of `queries`, columns those of `g`.
    q: query labels, 'pid' and 'camid' (Q,) arrays.
    g: the ranked columns' 'pid' and 'camid' (G,) arrays and 'source', a
      (split, tracklet) pair per column telling where its frames are.
    frames_fn: (split, tracklet, n) -> (n, H, W, 3) uint8 frames to show.
    queries: which query rows to draw (``choose_queries``).
    ap_per_query, first_match_rank: (Q,) per-query results, for the caption.
    name_fn: (split, tracklet) -> the tracklet's name in its source release,
      or None for none.
    top_k: ranks drawn per query.
  Returns:
    [(path, image as (h, w, 3) uint8)] in the order of `queries`.
  """
  os.makedirs(out_dir, exist_ok=True)
  dist = np.asarray(dist)
  name = name_fn or (lambda split, t: '')
  written = []
  for row, i in enumerate(map(int, queries)):
    pid, cam = int(q['pid'][i]), int(q['camid'][i])
    gallery = []
    for rank, t in enumerate(top_gallery(dist[row], pid, cam, g, top_k), start=1):
      split, tracklet = g['source'][t]
      gpid = int(g['pid'][t])
      gallery.append({
          'frames': frames_fn(split, int(tracklet), frames_per_tracklet),
          'correct': gpid == pid,
          'caption': f'#{rank} pid {gpid} cam {int(g["camid"][t])} {name(split, tracklet)}'
                     f'\nd={dist[row, t]:.3g}'})
    caption = (f'query {i} pid {pid} cam {cam} {name("query", i)}\n'
               f'AP {ap_per_query[i]:.3f}, first match #{int(first_match_rank[i])}')
    image = ranked_list_image(frames_fn('query', i, frames_per_tracklet), caption, gallery)
    path = os.path.join(out_dir, f'query_{i:04d}_pid{pid}.png')
    image.save(path)
    written.append((path, np.asarray(image)))
  return written
