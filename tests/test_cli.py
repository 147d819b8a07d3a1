"""The command line: every numeric argument is range-checked and refused in one line."""

import argparse

import pytest

from jax_interact import cli

# type -> a value out of its range
RANGE_CHECKED = {cli.count: "0", cli.non_negative: "-1", cli.seed: "-1", cli.shard: "2/2",
                 cli.port: "65536", cli.positive_seconds: "0", cli.batch_sizes: "1,0"}


def typed_arguments(parser: argparse.ArgumentParser, words=()):
  """(command words, option, type) of every argument that has a type, in every subcommand."""
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for name, sub in action.choices.items():
        yield from typed_arguments(sub, (*words, name))
    elif action.type is not None:
      yield list(words), action.option_strings[0], action.type


def test_every_typed_argument_is_range_checked():
  arguments = list(typed_arguments(cli._parser()))
  assert len(arguments) >= 15
  unchecked = [(words, option) for words, option, kind in arguments if kind not in RANGE_CHECKED]
  assert unchecked == []


@pytest.mark.parametrize("words, option, kind", [
    pytest.param(*argument, id=" ".join([*argument[0], argument[1]]))
    for argument in typed_arguments(cli._parser())])
def test_an_out_of_range_number_exits_2_with_one_line(words, option, kind, capsys):
  assert cli.main([*words, option, RANGE_CHECKED[kind]]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error:") and option in err


def test_bench_decode_with_no_sessions_writes_nothing(tmp_path, capsys):
  out = tmp_path / "decode.json"
  code = cli.main(["bench", "decode", "--config", "configs/tiny.py", "--out", str(out),
                   "--batch", "0"])
  assert code == 2
  assert "--batch: got '0', expected an integer >= 1" in capsys.readouterr().err
  assert not out.exists()


def test_a_coordinator_without_a_valid_port_exits_2(tmp_path, capsys):
  code = cli.main(["train", "--config", "configs/tiny.py", "--workdir", str(tmp_path / "w"),
                   "--coordinator", "localhost:99999", "--num_processes", "2",
                   "--process_id", "0"])
  assert code == 2
  assert "port in [1, 65535]" in capsys.readouterr().err


def test_name_lists_refuse_unknown_and_repeated_names_in_one_line():
  """--tasks, --stages, --platforms and train.feedback_noise_on share one checker; each says
  where."""
  from benchmarks import recipe
  from data_pipelines.generate import parse_tasks
  from jax_interact.errors import ConfigError, InputError
  from jax_interact.models import losses
  from jax_interact.serving.export import parse_platforms
  assert cli.known_names(" b, a,", ("a", "b")) == ("b", "a")
  assert parse_tasks("") == parse_tasks(",".join(parse_tasks("")))
  for bad in ("turn_taking,juggling", "delegate,delegate"):
    with pytest.raises(InputError, match=f"--tasks: got '{bad}', expected some of turn_taking"):
      parse_tasks(bad)
  for bad in ("", "eval,eval", "train,test"):
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
      recipe._stages(bad)
  for bad in ("", "text,text"):
    with pytest.raises(ConfigError, match="^where: got"):
      losses.noise_targets(bad, where="where")
  for bad in (",", "cpu,gpu"):
    with pytest.raises(InputError, match=f"--platforms: got '{bad}', expected one or more of cpu"):
      parse_platforms(bad)
