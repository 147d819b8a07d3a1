"""`jax-interact demo`: the main job, end to end on whatever machine it runs on.

Generates a small synthetic dataset (cached: reused when its manifest is there), trains the
`tiny` config on it, draws one episode, and prints a table of the artifacts written. Each stage
is the same command a user would run by hand, so the demo doubles as a tour of the CLI.
"""

from __future__ import annotations

import json
import pathlib
import time

from jax_interact import cli, config

CONFIG = config.resolve("configs/tiny.py")


def _stage(title: str, argv: list[str]) -> float:
  print(f"\n== {title}\n$ jax-interact {' '.join(argv)}", flush=True)
  start = time.perf_counter()
  code = cli.main(argv)
  if code:
    raise SystemExit(code)
  return time.perf_counter() - start


def main(args) -> int:
  out = pathlib.Path(args.out)
  data, workdir = out / "data", out / "train"
  timings = {}
  if (data / "manifest.json").is_file():
    print(f"== using cached dataset {data}")
  else:
    timings["generate"] = _stage("generate the synthetic dataset", [
        "data", "generate", "--out", str(data), "--episodes", str(args.episodes),
        "--seed", "0"])
  timings["inspect"] = _stage("draw episode 0", [
      "data", "inspect", str(data), "--index", "0", "--config", str(CONFIG),
      "--out", str(out / "episode0.png"), "--json", str(out / "episode0.json")])
  timings["train"] = _stage("train tiny", [
      "train", "--config", str(CONFIG), "--workdir", str(workdir),
      f"--config.data.dir={data}", f"--config.train.steps={args.steps}"])

  last = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
  first = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[0])
  rows = [
      ("dataset", data, f"{len(json.loads((data / 'manifest.json').read_text())['episodes'])}"
                        " episodes"),
      ("episode plot", out / "episode0.png", "audio, video, words, micro-turn grid"),
      ("episode slots", out / "episode0.json", "decoded slots per micro-turn"),
      ("checkpoints", workdir / "checkpoints", f"step {last['step']}"),
      ("metrics", workdir / "metrics.jsonl",
       f"loss {first['loss']:.3f} -> {last['loss']:.3f}"),
      ("tensorboard", workdir / "tensorboard", "tensorboard --logdir there"),
  ]
  width = max(len(r[0]) for r in rows)
  print("\n== summary")
  for name, path, what in rows:
    print(f"{name:<{width}}  {str(path):<48}  {what}")
  print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
  return 0
