"""Delegation at runtime: the orchestrator feeds background jobs into the engine's bg slots."""

import numpy as np
import pytest
from flax import nnx

from jax_interact import config as config_lib
from jax_interact import models
from jax_interact.background import workers
from jax_interact.background.orchestrator import Orchestrator
from jax_interact.background.transcript import USER_TYPED
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session
from jax_interact.inference.chunks import episode_chunks
from jax_interact.streams.episode import Episode, Word
from jax_interact.streams.timing import SAMPLE_RATE
from jax_interact.streams.tokenizer import BG, BG_END, PAD, Tokenizer, train_tokenizer

QUESTION = "what is 17 times 23"
RESULT = "17 times 23 is 391"


def tiny_config():
  return config_lib.load("configs/tiny.py", [
      "stream.n_mels=20", "stream.video_height=40", "stream.video_width=40",
      "model.vocab_size=64", "model.d_model=32", "model.n_heads=2", "model.n_kv_heads=1",
      "model.head_dim=16", "model.d_ff=64", "model.window_turns=4", "model.local_d_model=32",
      "model.local_heads=2", "model.local_d_ff=64", "model.flow_hidden=32"])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
  train_tokenizer([QUESTION, RESULT, "let me check", "hello there", "what time is it"] * 5, path,
                  vocab_size=64)
  return Tokenizer.load(path)


class Recorder:
  """Wraps the engine's jitted step to keep every input segment it was given."""

  def __init__(self, engine):
    self.inputs = []
    self._step = engine._step
    engine._step = self

  def __call__(self, params, state, inputs):
    self.inputs.append({k: np.array(v) for k, v in inputs.items()})
    return self._step(params, state, inputs)

  def group(self, key, row, since=0):
    return [int(i) for chunk in self.inputs[since:] for i in chunk[key][row]]


@pytest.fixture(scope="module")
def engine():
  config = tiny_config()
  engine = engine_lib.Engine(
      session.program(models.build(config, nnx.Rngs(0)), config), batch_size=2)
  engine.recorder = Recorder(engine)
  return engine


@pytest.fixture
def orchestrator(engine, tokenizer):
  made = []

  def make(worker, **kwargs):
    orchestrator = Orchestrator(engine, worker, tokenizer, **kwargs)
    made.append(orchestrator)
    return orchestrator

  yield make
  for orchestrator in made:
    orchestrator.close()
    for row in list(orchestrator.sessions):
      orchestrator.evict(row)


def steps(orchestrator, row, n, chunks=None):
  return [orchestrator.step({row: None if chunks is None else chunks[i]})[row] for i in range(n)]


def test_calculator_answers_like_the_synthetic_results():
  assert list(workers.calculate(f"0.2s user typed: {QUESTION}\ntask: 9 times 9")) == \
      ["9", "times", "9", "is", "81"]
  assert list(workers.calculate(f"0.2s user typed: {QUESTION}\ntask: hmm")) == RESULT.split()
  assert list(workers.calculate("task: what is 40 minus 52")) == ["40", "minus", "52", "is", "-12"]


def test_result_tokens_enter_only_background_slots_in_order(engine, tokenizer, orchestrator):
  orch = orchestrator(workers.tool_worker("calculator", tokenizer))
  row = orch.add("calc")
  steps(orch, row, 2)
  since = len(engine.recorder.inputs)
  assert orch.delegate(row, task=QUESTION)
  steps(orch, row, 8)
  bg = [i for i in engine.recorder.group("bg", row, since) if i != PAD]
  expected = [BG] + [i for w in RESULT.split() for i in tokenizer.encode(w)] + [BG_END]
  assert bg == expected
  text_in = engine.recorder.group("text_in", row, since)
  assert set(text_in) == {PAD}
  kinds = [e["type"] for e in orch.events(row)]
  assert kinds[0] == "delegate" and kinds[-1] == "result_end" and set(kinds[1:-1]) == {"result"}
  assert tokenizer.decode([i for e in orch.events(row)[1:-1] for i in e["ids"]]) == RESULT
  assert not orch.pending(row)


def test_loop_keeps_stepping_while_a_slow_job_is_pending(tokenizer, orchestrator):
  slow = workers.tool_worker("slow", tokenizer, slow_token_s=600.0)
  orch = orchestrator(slow)
  row = orch.add("slow")
  assert orch.delegate(row, task="think hard")
  done_while_pending = 0
  for _ in range(6):
    orch.step({row: None})
    done_while_pending += orch.pending(row)
  assert done_while_pending == 6


def test_cancel_closes_the_job_with_bg_end(engine, tokenizer, orchestrator):
  orch = orchestrator(workers.tool_worker("slow", tokenizer, slow_token_s=600.0))
  row = orch.add("cancel")
  since = len(engine.recorder.inputs)
  orch.delegate(row, task="think hard")
  steps(orch, row, 2)
  orch.cancel(row)
  steps(orch, row, 2)
  assert not orch.pending(row)
  assert [i for i in engine.recorder.group("bg", row, since) if i != PAD] == [BG, BG_END]
  assert orch.events(row)[-1]["ending"] == "cancelled"


def test_timeout_closes_the_job_after_its_stream_time(engine, tokenizer, orchestrator):
  orch = orchestrator(workers.tool_worker("slow", tokenizer, slow_token_s=600.0), timeout_s=0.6)
  row = orch.add("timeout")
  orch.delegate(row, task="think hard")
  steps(orch, row, 2)
  assert orch.pending(row)  # 0.4 s of stream time
  steps(orch, row, 2)
  assert not orch.pending(row)
  end = orch.events(row)[-1]
  assert end["type"] == "result_end" and end["ending"] == "timeout"


class Capture:
  """A worker that keeps the packages it is given and answers nothing."""

  def __init__(self):
    self.packages = []

  def submit(self, package):
    self.packages.append(package)
    job = workers.Job(workers.task_of(package))
    job.finish()
    return job

  def close(self):
    pass


def test_package_holds_the_whole_transcript_so_far(tokenizer, orchestrator):
  capture = Capture()
  orch = orchestrator(capture)
  row = orch.add("package")
  typed = {0: "hello there", 3: QUESTION}
  chunks = [engine_lib.Chunk(text_ids=tuple(tokenizer.encode(typed.get(t, "")))) for t in range(5)]
  steps(orch, row, 5, chunks)
  orch.delegate(row)
  package = capture.packages[0]
  transcript = orch.transcript(row)
  assert package == transcript.package(tokenizer)
  lines = transcript.lines(tokenizer)
  assert [text for _, source, text in lines if source == USER_TYPED] == ["hello there", QUESTION]
  body = package.splitlines()[:-1]
  assert body == [f"{t:.1f}s {source}: {text}" for t, source, text in lines]
  assert "0.0s user typed: hello there" in body and "0.6s user typed: " + QUESTION in body
  assert package.splitlines()[-1] == f"task: {transcript.latest_user_text(tokenizer)}"


def delegate_episode(seconds=4.0):
  n = int(seconds * SAMPLE_RATE)
  arrivals = [1.6, 1.7, 1.8, 1.9, 2.0]
  return Episode(
      index=0, task="delegate", user_audio=np.zeros(n, np.int16),
      model_audio=np.zeros(n, np.int16), video=np.zeros((0, 40, 40, 3), np.uint8),
      video_times_s=np.zeros(0, np.float32),
      words=[Word("model", "let", 0.8, 0.9), Word("model", "me", 0.9, 1.0),
             Word("model", "check", 1.0, 1.2)],
      events=[{"type": "typed", "time_s": 0.0, "text": QUESTION},
              {"type": "delegate", "time_s": 0.8, "task": QUESTION,
               "result_words": [{"text": w, "time_s": t} for w, t in zip(RESULT.split(), arrivals)]}])


def test_end_to_end_calculator_result_reaches_the_following_bg_slots(engine, tokenizer,
                                                                     orchestrator):
  episode = delegate_episode()
  chunks = episode_chunks(episode, engine.layout, tokenizer)
  orch = orchestrator(workers.tool_worker("calculator", tokenizer))
  row = orch.add("episode")
  since = len(engine.recorder.inputs)
  delegate_turn = 3  # the episode's `<delegate>` (0.8 s) is written in micro-turn 3
  for t, chunk in enumerate(chunks):
    if t == delegate_turn + 1 and not orch.events(row):  # the random model did not delegate
      orch.delegate(row)
    orch.step({row: chunk})
  start = orch.events(row)[0]
  assert start["type"] == "delegate" and QUESTION in start["package"]
  bg_by_turn = [[int(i) for i in chunk["bg"][row] if i != PAD]
                for chunk in engine.recorder.inputs[since:]]
  assert not any(bg_by_turn[:start["micro_turn"]])  # nothing before the job started
  flat = [i for ids in bg_by_turn for i in ids]
  flat = flat[:flat.index(BG_END) + 1]  # the first job (the random model may delegate again)
  assert flat == [BG] + [i for w in RESULT.split() for i in tokenizer.encode(w)] + [BG_END]
