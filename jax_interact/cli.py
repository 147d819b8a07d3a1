"""`jax-interact`: the command line (SPEC §9).

Each command is `module:function` taking the parsed arguments; modules are imported only when
their command runs, so `jax-interact --help` stays fast. Bad input anywhere surfaces as an
`InputError`, and a bad argument as argparse's usage error: one line on stderr, exit code 2.
Every numeric argument is parsed by one of the range-checked types below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jax_interact.errors import InputError


class _Parser(argparse.ArgumentParser):
  """argparse reporting a usage error in one line, as every other bad input is reported."""

  def error(self, message: str):
    self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def _integer(low: int, high: int | None = None, expected: str = ""):
  """An argparse type: an integer in [low, high]."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      value = None
    if value is None or value < low or (high is not None and value > high):
      raise argparse.ArgumentTypeError(f"got {text!r}, expected {expected}")
    return value
  return parse


def shard(text: str) -> tuple[int, int]:
  """An argparse type: 'I/N', part I (0-based) of N."""
  index, _, parts = text.partition("/")
  try:
    value = (int(index), int(parts))
  except ValueError:
    value = None
  if value is None or not 0 <= value[0] < value[1]:
    raise argparse.ArgumentTypeError(f"got {text!r}, expected I/N with 0 <= I < N")
  return value


def comma_list(text: str) -> tuple[str, ...]:
  """'a, b,' -> ('a', 'b'): the names of a comma-separated argument, blanks dropped."""
  return tuple(name.strip() for name in text.split(",") if name.strip())


def known_names(text: str, known: Sequence[str], required: bool = True) -> tuple[str, ...]:
  """'a,b' -> ('a', 'b') where each is one of `known`, at most once, and at least one unless not
  `required`; ValueError saying what was expected otherwise, for the caller to raise as its own
  kind of error."""
  names = comma_list(text)
  unknown_or_repeated = not set(names) <= set(known) or len(set(names)) != len(names)
  if unknown_or_repeated or (required and not names):
    raise ValueError(f"got {text!r}, expected {'one or more' if required else 'some'} of "
                     f"{','.join(known)}, each once, comma-separated")
  return names


count = _integer(1, expected="an integer >= 1")
non_negative = _integer(0, expected="an integer >= 0")
seed = _integer(0, 2**31 - 1, expected="an integer in [0, 2**31)")
port = _integer(0, 65535, expected="a port in [0, 65535] (0: any free port)")


def positive_seconds(text: str) -> float:
  """An argparse type: a finite number of seconds > 0."""
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not 0 < value < float("inf"):
    raise argparse.ArgumentTypeError(f"got {text!r}, expected a number of seconds > 0")
  return value


def batch_sizes(text: str) -> tuple[int, ...]:
  """An argparse type: one batch size >= 1, or several comma-separated."""
  try:
    return tuple(count(size) for size in text.split(","))
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(f"got {text!r}, expected an integer >= 1 or several, "
                                     "comma-separated (e.g. 1,8,32)") from None


def _config_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", required=True, help="config file, e.g. configs/tiny.py")


def _checkpoint_arg(p: argparse.ArgumentParser) -> None:
  p.add_argument("--checkpoint", choices=("latest", "best"), default="latest",
                 help="the last periodic checkpoint, or the best interactivity score seen "
                 "during training (train.interact_every_steps)")


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jax-interact", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True)

  data = commands.add_parser("data", help="generate, inspect and convert episodes")
  data_commands = data.add_subparsers(dest="data_command", required=True)
  p = data_commands.add_parser("generate", help="write a synthetic dataset and manifest.json")
  p.add_argument("--out", required=True)
  p.add_argument("--episodes", type=count, required=True)
  p.add_argument("--tasks", default="", help="comma-separated task families (default: all)")
  p.add_argument("--seed", type=seed, default=0)
  p.add_argument("--workers", type=non_negative, default=0,
                 help="processes (default 0: all cores)")
  p.add_argument("--vocab-size", type=count, help="the tokenizer's pieces at most (default 512, "
                 "which every shipped config's model.vocab_size holds)")
  p.add_argument("--shard", type=shard, help="I/N: write only part I (0-based) of N, to join "
                 "with the others by `data merge`")
  p.set_defaults(run="data_pipelines.generate:main")
  p = data_commands.add_parser("merge", help="join the parts written by `data generate --shard`")
  p.add_argument("--out", required=True)
  p.add_argument("parts", nargs="+", help="the N part directories")
  p.set_defaults(run="data_pipelines.merge:main")
  p = data_commands.add_parser("featurize", help="build the feature caches a config's training "
                               "reads (train builds missing ones itself)")
  p.add_argument("dir", help="dataset directory")
  _config_args(p)
  p.add_argument("--splits", default="train,validation", help="comma-separated splits")
  p.add_argument("--workers", type=non_negative, default=0,
                 help="processes (default 0: all cores)")
  p.set_defaults(run="data_pipelines.features:main")
  p = data_commands.add_parser("inspect", help="draw one episode on a time axis")
  p.add_argument("dir")
  p.add_argument("--index", type=non_negative, default=0)
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
  p.add_argument("--num_processes", type=count, help="processes in the run (JAX_NUM_PROCESSES)")
  p.add_argument("--process_id", type=non_negative, help="index of this process (JAX_PROCESS_ID)")
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
  p.add_argument("--seed", type=seed, default=0)
  p.add_argument("--background", help="serve <delegate>: a trained background workdir, or "
                 "tool:calculator, tool:clock, tool:slow")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.stream:main")

  p = commands.add_parser("export", help="write a bundle that serves without the model code")
  p.add_argument("--workdir", required=True, help="a training workdir (interaction model)")
  p.add_argument("--out", required=True, help="bundle directory to write")
  p.add_argument("--batch", type=count, default=8, help="sessions the exported step runs at once")
  p.add_argument("--platforms", help="comma-separated: cpu,cuda,rocm,tpu (default: this "
                 "machine's)")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.serving.export:main")

  p = commands.add_parser("serve", help="serve live sessions over WebSocket, with a browser page")
  source = p.add_mutually_exclusive_group(required=True)
  source.add_argument("--bundle", help="an export bundle (jax-interact export)")
  source.add_argument("--workdir", help="a training workdir")
  p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
  p.add_argument("--port", type=port, default=8000, help="0: any free port (printed)")
  p.add_argument("--max-sessions", type=count, help="concurrent sessions (default: the bundle's "
                 "batch, or 8)")
  p.add_argument("--background", help="serve <delegate>: tool:calculator, tool:clock, tool:slow "
                 "or a trained background workdir")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.serving.server:main")

  p = commands.add_parser("eval", help="score interactivity per task family; write a report")
  p.add_argument("--workdir", required=True, help="a training workdir")
  p.add_argument("--data", required=True, help="dataset directory")
  p.add_argument("--out", required=True, help="directory for report.json, report.md, plots")
  p.add_argument("--max-episodes", type=count, default=45, help="episodes of the split scored")
  p.add_argument("--batch", type=count, default=8, help="sessions streamed together")
  p.add_argument("--split", default="validation")
  _checkpoint_arg(p)
  p.set_defaults(run="jax_interact.evaluate:main")

  p = commands.add_parser("demo", help="the main job: generate, train configs/demo.py, evaluate, "
                          "stream, summarise")
  p.add_argument("--out", default="out/demo")
  p.add_argument("--episodes", type=count, default=900, help="training episodes")
  p.add_argument("--steps", type=count, help="train steps (default: the config's)")
  p.add_argument("--eval-episodes", type=count, default=135,
                 help="episodes of another seed scored (45 a family)")
  p.add_argument("--minutes", type=non_negative, default=14,
                 help="wall-clock budget of the whole demo: training stops early (and says so) "
                      "to finish within it on a slow machine (0: no budget)")
  p.set_defaults(run="jax_interact.demo:main")

  bench = commands.add_parser("bench", help="benchmarks writing JSON")
  bench_commands = bench.add_subparsers(dest="bench_command", required=True)
  for name, help_text in (("data", "input pipeline and generation throughput"),
                          ("train", "train step time, tokens/s, MFU"),
                          ("decode", "streaming step latency"),
                          ("serve", "WebSocket server ticks under N real-time clients")):
    p = bench_commands.add_parser(name, help=help_text)
    _config_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(run=f"jax_interact.bench.{name}:main")
    if name == "train":
      p.add_argument("--steps", type=count, default=10, help="steps timed after the warm-up")
    if name == "decode":
      p.add_argument("--batch", type=batch_sizes, default=(1,),
                     help="sessions stepped together; several, comma-separated, are timed in "
                     "turn on one model (e.g. 1,8,32,64)")
      p.add_argument("--micro-turns", type=count, default=1000, help="steps timed per batch")
      p.add_argument("--agreement-turns", type=non_negative, default=None,
                     help="micro-turns of the teacher-forced agreement check (default: "
                     "min(2 * window_turns, 32); 0 skips it)")
      p.add_argument("--background", help="also time the loop with this worker beside it "
                     "(e.g. slow), delegating every --delegate-every micro-turns")
      p.add_argument("--delegate-every", type=count, default=25)
    if name == "serve":
      p.add_argument("--clients", type=count, default=8, help="the most clients tried")
      p.add_argument("--seconds", type=positive_seconds, default=20, help="length of each run")
      p.add_argument("--data", help="dataset whose validation episodes the clients stream "
                     "(default: freshly generated synthetic episodes)")
  return parser


def split_overrides(argv: list[str] | None) -> tuple[list[str], list[str]]:
  """(the other arguments, the `--config.key=value` overrides) of `argv` (default: this
  process's): overrides are collected apart from the declared flags."""
  argv = list(sys.argv[1:] if argv is None else argv)
  return ([a for a in argv if not a.startswith("--config.")],
          [a for a in argv if a.startswith("--config.")])


def main(argv: list[str] | None = None) -> int:
  parser = _parser()
  argv, overrides = split_overrides(argv)
  try:
    args = parser.parse_args(argv)
  except SystemExit as e:  # a usage error (code 2) or --help (code 0), already printed
    return int(e.code or 0)
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
