"""`jax-interact`: the command line (SPEC §9).

Each command is `module:function` taking the parsed arguments; modules are imported only when
their command runs, so `jax-interact --help` stays fast. Bad input anywhere surfaces as an
`InputError`: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jax_interact.errors import InputError


def _config_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", required=True, help="config file, e.g. configs/tiny.py")


def _checkpoint_arg(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", choices=("latest", "best"), default="latest",
                 help="the last periodic checkpoint, or the best interactivity score seen "
                 "during training (train.interact_every_steps)")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jax-interact", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)

  data = commands.add_parser("data", help="generate, inspect and convert episodes")
  data_commands = data.add_subparsers(dest="data_command", required=True)
  p = data_commands.add_parser("generate", help="write a synthetic dataset and manifest.json")
  p.add_argument("--out", required=True)
  p.add_argument("--episodes", type=int, required=True)
  p.add_argument("--tasks", default="", help="comma-separated task families (default: all)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
  p.set_defaults(run="data_pipelines.generate:main")
  p = data_commands.add_parser("inspect", help="draw one episode on a time axis")
  p.add_argument("dir")
  p.add_argument("--index", type=int, default=0)
  p.add_argument("--out", help="PNG to write")
  p.add_argument("--json", help="JSON of the decoded micro-turn slots to write")
  p.add_argument("--config", default=None, help="config whose stream layout to use")
  p.set_defaults(run="data_pipelines.inspect:main")
  p = data_commands.add_parser("convert", help="turn a two-channel conversation into episodes")
  p.add_argument("--audio", required=True, help="WAV or FLAC: channel 0 user, channel 1 model")
  p.add_argument("--words", required=True, help="JSON list of {speaker, text, start_s, end_s}")
  p.add_argument("--out", required=True)
  p.set_defaults(run="data_pipelines.convert:main")

  p = commands.add_parser("train", help="train a model")
  _config_args(p)
  p.add_argument("--workdir", required=True)
  # Multi-host (see jax_interact/training/distributed.py); environment variables work too.
  p.add_argument("--coordinator", help="HOST:PORT of process 0 (JAX_COORDINATOR_ADDRESS)")
  p.add_argument("--num_processes", type=int, help="processes in the run (JAX_NUM_PROCESSES)")
  p.add_argument("--process_id", type=int, help="index of this process (JAX_PROCESS_ID)")
  p.add_argument("--multihost", action="store_true",
                 help="detect the cluster (TPU pod, SLURM, MPI) and join it")
  p.set_defaults(run="jax_interact.trainer:main")

  p = commands.add_parser("stream", help="run one streaming session and write its artifacts")
  p.add_argument("--workdir", required=True, help="a training workdir")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--episode", help="DIR:K, episode K of a dataset")
  source.add_argument("--audio", help="user audio file (WAV or FLAC, any rate)")
  p.add_argument("--video", help="video file to watch along with --audio")
  p.add_argument("--out", required=True)
  p.add_argument("--realtime", action="store_true", help="pace micro-turns at 200 ms")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--background", help="serve <delegate>: a trained background workdir, or "
                 "tool:calculator, tool:clock, tool:slow")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.inference.stream:main")

  p = commands.add_parser("eval", help="score interactivity per task family; write a report")
  p.add_argument("--workdir", required=True, help="a training workdir")
  p.add_argument("--data", required=True, help="dataset directory")
  p.add_argument("--out", required=True, help="directory for report.json, report.md, plots")
  p.add_argument("--max-episodes", type=int, default=45, help="episodes of the split scored")
  p.add_argument("--batch", type=int, default=8, help="sessions streamed together")
  p.add_argument("--split", default="validation")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.evaluation.command:main")

  p = commands.add_parser("demo", help="the main job: generate, train tiny, evaluate, stream, summarise")
  p.add_argument("--out", default="out/demo")
  p.add_argument("--episodes", type=int, default=90)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--eval-episodes", type=int, default=18)
  p.set_defaults(run="jax_interact.demo:main")

  bench = commands.add_parser("bench", help="benchmarks writing JSON")
  bench_commands = bench.add_subparsers(dest="bench_command", required=True)
  for name, help_text in (("data", "input pipeline and generation throughput"),
                          ("train", "train step time, tokens/s, MFU"),
                          ("decode", "streaming step latency")):
    p = bench_commands.add_parser(name, help=help_text)
    _config_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(run=f"jax_interact.bench.{name}:main")
    if name == "train":
      p.add_argument("--steps", type=int, default=10, help="steps timed after the warm-up")
    if name == "decode":
      p.add_argument("--batch", type=_batch_sizes, default=(1,),
                     help="sessions stepped together; several, comma-separated, are timed in "
                     "turn on one model (e.g. 1,8,32,64)")
      p.add_argument("--micro-turns", type=int, default=1000, help="steps timed per batch")
      p.add_argument("--agreement-turns", type=int, default=None,
                     help="micro-turns of the teacher-forced agreement check (default: "
                     "min(2 * window_turns, 32); 0 skips it)")
      p.add_argument("--background", help="also time the loop with this worker beside it "
                     "(e.g. slow), delegating every --delegate-every micro-turns")
      p.add_argument("--delegate-every", type=int, default=25)
  return parser


def _batch_sizes(text: str) -> tuple[int, ...]:
  try:
    sizes = tuple(int(x) for x in text.split(","))
  except ValueError:
    sizes = ()
  if not sizes or min(sizes) < 1:
    raise argparse.ArgumentTypeError(f"got {text!r}, expected positive integers like 1,8,32")
  return sizes


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  # `--config.key=value` overrides are collected apart from the declared flags.
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides = [a for a in argv if a.startswith("--config.")]
  args = parser.parse_args([a for a in argv if not a.startswith("--config.")])
  args.overrides = overrides
  module_name, function_name = args.run.split(":")
  try:
    run = getattr(importlib.import_module(module_name), function_name)
    return int(run(args) or 0)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
