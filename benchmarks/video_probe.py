"""Does a run's video stem see the bouncing ball? A linear probe of its video tokens.

    python benchmarks/video_probe.py --data out/rep22 --out /tmp/probe.json \
        out/fw1/train [WORKDIR ...] [--random-seeds 0 1] [--episodes 60]

For the rep_count episodes of `--data` (split train; featurized for each run's stream format),
each micro-turn's video tokens (the stem's output, the parameters' moving average where the run
kept one) are fitted by ridge regression on the first two thirds of the episodes and scored on
the rest, for the ball's height above the floor (R^2) and for floor contact (height under 20 px
of the 160 px scene: recall, specificity). Frames in which the ball is off screen (falling in,
flying away) are left out. `--random-seeds` adds untrained stems of the first run's config, the
floor a trained stem should beat: a stem that learned to see the ball encodes it better.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np
from flax import nnx

from data_pipelines import dataset, features, procedural_video
from jax_interact import atomic
from jax_interact.inference import trained
from jax_interact.models import build

ON_SCREEN_PX = 130  # the ball's bottom is at most this high above the floor in view
FLOOR_CONTACT_PX = 20
RIDGE = 1.0


def frames_and_heights(data: str, stream, episodes: int) -> tuple[np.ndarray, ...]:
  """(video slots [T, K_v, P, P, C], ball height px [T], episode [T]) of the on-screen micro-turns
  of the first `episodes` rep_count episodes."""
  source = dataset.open_split(data, "train")
  tasks = dataset.split_tasks(data, "train")
  cache = features.Features(features.ensure(data, stream, "train", progress=False))
  picked = [i for i, task in enumerate(tasks) if task == "rep_count"][:episodes]
  if not picked:
    raise SystemExit(f"{data}: no rep_count episodes in split train")
  video, height, episode = [], [], []
  for n, i in enumerate(picked):
    tracks = cache.tracks(i)
    times_s = np.asarray(tracks["turn"], np.float64) * stream.chunk_ms / 1000
    h = procedural_video.ball_height(times_s, np.asarray(source[i].annotations["bounces_s"]))
    keep = np.asarray(tracks["video_mask"]) & (h < ON_SCREEN_PX)
    video.append(np.asarray(tracks["video"])[keep])
    height.append(h[keep])
    episode.append(np.full(int(keep.sum()), n))
  return np.concatenate(video), np.concatenate(height), np.concatenate(episode)


def ridge_predictions(z: np.ndarray, y_TY: np.ndarray, fit: np.ndarray) -> np.ndarray:
  """Predictions of each target column of y_TY from features z by ridge regression fitted on
  rows `fit`."""
  z = (z - z[fit].mean(0)) / (z[fit].std(0) + 1e-6)
  a = np.c_[z, np.ones(len(z))]
  w = np.linalg.solve(a[fit].T @ a[fit] + RIDGE * np.eye(a.shape[1]), a[fit].T @ y_TY[fit])
  return a @ w


def probe(tokens: np.ndarray, height: np.ndarray, episode: np.ndarray) -> dict[str, float]:
  fit = episode < np.ceil(episode.max() * 2 / 3)
  test = ~fit
  contact = (height < FLOOR_CONTACT_PX).astype(np.float64)
  predicted_TY = ridge_predictions(tokens, np.stack([height, contact], axis=1), fit)[test]
  r2 = 1 - np.mean((predicted_TY[:, 0] - height[test]) ** 2) / np.var(height[test])
  said = predicted_TY[:, 1] > 0.5
  truth = contact[test] > 0.5
  return {"height_r2": float(r2), "contact_recall": float((said & truth).sum() / truth.sum()),
          "contact_specificity": float((~said & ~truth).sum() / (~truth).sum()),
          "frames": int(test.sum())}


def stem_tokens(model, video: np.ndarray) -> np.ndarray:
  graphdef, state = nnx.split(model)
  run = jax.jit(lambda v: nnx.merge(graphdef, state).video_stem(v))
  tokens = np.concatenate([np.asarray(run(video[i:i + 512])) for i in range(0, len(video), 512)])
  return tokens.reshape(len(video), -1).astype(np.float64)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="training workdirs (latest checkpoint)")
  parser.add_argument("--data", required=True, help="a dataset with rep_count episodes")
  parser.add_argument("--episodes", type=int, default=60, help="rep_count episodes probed")
  parser.add_argument("--random-seeds", type=int, nargs="*", default=[],
                      help="also probe untrained stems of the first run's config")
  parser.add_argument("--out", required=True, help="JSON file written")
  args = parser.parse_args()
  runs = {}
  for workdir in args.workdirs:
    run = trained.load(workdir)
    runs[f"{workdir}@{run.step}"] = (run.config, run.model)
  first_config = next(iter(runs.values()))[0]
  for seed in args.random_seeds:
    runs[f"untrained seed {seed}"] = (first_config, build(first_config, nnx.Rngs(seed)))
  results, scenes = {}, {}  # scenes: per stream format, what frames_and_heights read
  for name, (config, model) in runs.items():
    stream_key = json.dumps(config.stream.to_dict(), sort_keys=True)
    if stream_key not in scenes:
      scenes[stream_key] = frames_and_heights(args.data, config.stream, args.episodes)
    video, height, episode = scenes[stream_key]
    results[name] = probe(stem_tokens(model, video), height, episode)
    print(name, " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in results[name].items()), flush=True)
  headline = {f"{name} {k}": round(v, 3) for name, r in results.items() for k, v in r.items()
              if k != "frames"}
  atomic.write_json(args.out, (
      {"benchmark": "video_probe", "data": args.data, "episodes": args.episodes,
       "config": str(first_config.name), "runs": results, "headline": headline}))


if __name__ == "__main__":
  main()
