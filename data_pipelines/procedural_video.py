"""Procedural video for the synthetic suite (SPEC §8): one 160x160 RGB frame per micro-turn.

Scenes are coloured discs and squares on a plain background, drawn for all frames at once with
numpy. Each scene's timing facts (bounces, colour changes, start and end of motion) are inputs,
so the generator knows them exactly. Objects use the exact `COLOURS` values (no shading), and
backgrounds are darker than any of them, so an object's pixels can be found by colour.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

FPS = 5.0  # one frame per 200 ms micro-turn; frame i shows the scene at time i / FPS
HEIGHT = WIDTH = 160
FLOOR_Y = 148  # rows >= FLOOR_Y are the floor of the bouncing-ball scene
BALL_SPEED_PX_S = 200.0  # vertical speed of the bouncing ball when it touches the floor

COLOURS = {
    "red": (220, 40, 40),
    "green": (50, 200, 70),
    "blue": (50, 90, 230),
    "yellow": (235, 210, 40),
    "purple": (170, 60, 215),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
    "cyan": (40, 205, 215),
}
_BACKGROUNDS = ((30, 30, 40), (20, 45, 35), (45, 35, 25), (25, 35, 60), (55, 55, 55))
_FLOOR_RGB = (100, 80, 60)


@dataclasses.dataclass(frozen=True)
class Shape:
  """A disc or square with a per-frame centre and colour."""
  kind: str  # "disc" | "square"
  x_F: np.ndarray  # float [F] centre column
  y_F: np.ndarray  # float [F] centre row
  size: float  # radius or half side, px
  rgb_F3: np.ndarray  # uint8 [F, 3]


def frame_times(duration_s: float) -> np.ndarray:
  """float32 [F]: one frame per micro-turn covering [0, duration_s)."""
  return (np.arange(math.ceil(duration_s * FPS - 1e-6)) / FPS).astype(np.float32)


def render(times_s: np.ndarray, background_rgb: tuple[int, int, int], shapes: list[Shape],
           floor: bool = False) -> np.ndarray:
  """uint8 [F, H, W, 3]: the shapes in order (later on top) over a vertical-gradient background."""
  shade_H = np.linspace(-12, 12, HEIGHT)[:, None, None]
  background_HW3 = np.clip(np.array(background_rgb)[None, None, :] + shade_H, 0, 255)
  background_HW3 = np.broadcast_to(background_HW3, (HEIGHT, WIDTH, 3)).astype(np.uint8)
  if floor:
    background_HW3 = background_HW3.copy()
    background_HW3[FLOOR_Y:] = _FLOOR_RGB
  frames_FHW3 = np.repeat(background_HW3[None], len(times_s), axis=0)
  rows_1H1 = np.arange(HEIGHT, dtype=np.float32)[None, :, None]
  cols_11W = np.arange(WIDTH, dtype=np.float32)[None, None, :]
  for shape in shapes:
    dy_FH1 = rows_1H1 - shape.y_F[:, None, None]
    dx_F1W = cols_11W - shape.x_F[:, None, None]
    if shape.kind == "disc":
      inside_FHW = dy_FH1**2 + dx_F1W**2 <= shape.size**2
    else:
      inside_FHW = (np.abs(dy_FH1) <= shape.size) & (np.abs(dx_F1W) <= shape.size)
    np.copyto(frames_FHW3, shape.rgb_F3[:, None, None, :], where=inside_FHW[..., None])
  return frames_FHW3


def bouncing_ball(rng: np.random.Generator, duration_s: float, bounces_s: np.ndarray,
                  colour: str) -> np.ndarray:
  """A ball that touches the floor exactly at `bounces_s` (sorted, at least 0.5 s apart).

  It falls in from above before the first bounce, flies up and away after the last, and in
  between follows arcs that meet the floor at the same speed on both sides of each bounce.
  """
  times_s = frame_times(duration_s)
  radius = rng.uniform(9, 13)
  height_F = ball_height(times_s, bounces_s)
  x_F = _drift(rng, times_s, rng.uniform(10, 30), radius, WIDTH - radius)
  ball = Shape("disc", x_F, FLOOR_Y - radius - height_F, radius, _constant(colour, times_s))
  return render(times_s, _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], [ball], floor=True)


def ball_height(times_s: np.ndarray, bounces_s: np.ndarray) -> np.ndarray:
  """Height (px) of the ball's bottom above the floor: 0 exactly at each bounce."""
  v = BALL_SPEED_PX_S
  t = np.asarray(times_s, np.float64)
  k = np.clip(np.searchsorted(bounces_s, t) - 1, 0, len(bounces_s) - 2)
  left, right = bounces_s[k], bounces_s[k + 1]
  arc = v * (t - left) * (right - t) / (right - left)
  height = np.where(t < bounces_s[0], v * (bounces_s[0] - t),
                    np.where(t > bounces_s[-1], v * (t - bounces_s[-1]), arc))
  return np.maximum(height, 0.0).astype(np.float32)


def colour_changes(rng: np.random.Generator, duration_s: float,
                   changes: list[tuple[float, str]]) -> np.ndarray:
  """A square taking colour `name` from each `(time_s, name)` on (the first at time 0), beside a
  drifting disc that never has the square's final colour."""
  times_s = frame_times(duration_s)
  change_times = np.array([t for t, _ in changes])
  palette = np.array([COLOURS[name] for _, name in changes], np.uint8)
  rgb_F3 = palette[np.searchsorted(change_times, times_s, side="right") - 1]
  half = rng.uniform(14, 22)
  square = Shape("square", np.full_like(times_s, rng.uniform(35, 60)),
                 np.full_like(times_s, rng.uniform(40, 120)), half, rgb_F3)
  other = rng.choice(sorted(set(COLOURS) - {changes[-1][1]}))
  radius = rng.uniform(8, 12)
  disc = Shape("disc", _drift(rng, times_s, rng.uniform(15, 40), 90, WIDTH - radius),
               _drift(rng, times_s, rng.uniform(15, 40), radius, HEIGHT - radius), radius,
               _constant(other, times_s))
  return render(times_s, _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], [square, disc])


def start_stop(rng: np.random.Generator, duration_s: float, start_s: float,
               stop_s: float) -> np.ndarray:
  """One object at rest that moves during [start_s, stop_s] only, beside a still square."""
  times_s = frame_times(duration_s)
  moving_s_F = np.clip(times_s, start_s, stop_s) - start_s
  size = rng.uniform(9, 14)
  angle = rng.uniform(0, 2 * np.pi)
  speed = rng.uniform(50, 90)
  colour, still_colour = rng.choice(sorted(COLOURS), size=2, replace=False)
  mover = Shape(str(rng.choice(["disc", "square"])),
                _fold(rng.uniform(30, 130) + speed * np.cos(angle) * moving_s_F, size,
                      WIDTH - size),
                _fold(rng.uniform(30, 130) + speed * np.sin(angle) * moving_s_F, size,
                      HEIGHT - size),
                size, _constant(colour, times_s))
  still = Shape("square", np.full_like(times_s, rng.uniform(15, 145)),
                np.full_like(times_s, rng.uniform(15, 145)), 7.0, _constant(still_colour, times_s))
  return render(times_s, _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], [still, mover])


def distractor(rng: np.random.Generator, duration_s: float) -> np.ndarray:
  """Two or three objects drifting at constant speed, for tasks that do not use the video."""
  times_s = frame_times(duration_s)
  shapes = []
  for colour in rng.choice(sorted(COLOURS), size=rng.integers(2, 4), replace=False):
    size = rng.uniform(8, 16)
    shapes.append(Shape(str(rng.choice(["disc", "square"])),
                        _drift(rng, times_s, rng.uniform(5, 40), size, WIDTH - size),
                        _drift(rng, times_s, rng.uniform(5, 40), size, HEIGHT - size),
                        size, _constant(colour, times_s)))
  return render(times_s, _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))], shapes)


def _constant(colour: str, times_s: np.ndarray) -> np.ndarray:
  return np.broadcast_to(np.array(COLOURS[colour], np.uint8), (len(times_s), 3))


def _drift(rng: np.random.Generator, times_s: np.ndarray, speed: float, low: float,
           high: float) -> np.ndarray:
  """A coordinate moving at `speed` px/s from a random start, reflected at [low, high]."""
  return _fold(rng.uniform(low, high) + rng.choice([-1, 1]) * speed * times_s, low, high)


def _fold(x: np.ndarray, low: float, high: float) -> np.ndarray:
  """Reflects x into [low, high] (motion bouncing off two walls)."""
  span = high - low
  phase = np.mod(x - low, 2 * span)
  return (low + np.where(phase > span, 2 * span - phase, phase)).astype(np.float32)
