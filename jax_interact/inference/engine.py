"""The engine (SPEC §7): many streaming sessions stepped as one batch, in real time or faster.

The batch has a fixed number of rows; a session occupies one. Rows are filled (`add`), restarted
(`reset`) and freed (`evict`) without recompiling: the jitted step always runs the whole batch,
and a freed row's outputs are dropped. Each micro-turn, every live session may supply a `Chunk`
of raw input (200 ms of 16 kHz audio, a video frame, typed text); a session that supplies none
(missing or late) gets an empty input segment and its output is flagged. A malformed chunk
raises InputError before anything runs, so no session's state changes.

The engine holds no model code: it runs a `Program`, a model's micro-turn step and state
handling as pure compiled functions, built in this process (`session.program`) or loaded from an
export bundle (`jax_interact.serving.bundle`), so a bundle serves with the same host side
(featurization, text queues, rows) as a training run.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import zlib
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jax_interact.errors import InputError
from jax_interact.streams import dmel, video
from jax_interact.streams.layout import GROUP_KEYS, Layout, SlotKind, empty_inputs


@dataclasses.dataclass(frozen=True)
class Program:
  """What the engine runs for one model. `state` is opaque to the engine; `reset` and `step`
  donate it. `step` returns at least `turn` [B] and the layout's output groups."""

  layout: Layout
  dmel_spec: dmel.DMelSpec
  vocab_size: int
  params: Any
  init_state: Callable[[int, int], Any]  # (batch, seed) -> state
  reset: Callable[[Any, jax.Array, jax.Array], Any]  # (state, rows_B bool, seed int32) -> state
  step: Callable[[Any, Any, dict], tuple[Any, dict]]  # (params, state, inputs) -> (state, out)
  batch_size: int | None = None  # the only batch size it takes (an export), None: any
  # Other weights of the same model (e.g. a newer training step) as `step` reads them.
  prepare_params: Callable[[Any], Any] = lambda params: params


@dataclasses.dataclass
class Chunk:
  """One micro-turn of live input for one session."""

  audio: np.ndarray | None = None  # float32 [chunk_samples] at 16 kHz, in [-1, 1]
  frame: np.ndarray | None = None  # uint8 [H, W, 3], any size (resized)
  text_ids: tuple[int, ...] = ()  # typed user text that arrived in this micro-turn


@dataclasses.dataclass
class TurnOutput:
  turn: int
  user_transcript: np.ndarray  # int32 [K_ut]
  text_out: np.ndarray  # int32 [K_to]
  audio_out: np.ndarray  # uint8 dMel bins [K_ao, k, M]
  missing_input: bool  # the chunk was missing or late and replaced by empty input
  step_ms: float  # wall time of the batched step this output came from


@dataclasses.dataclass
class _Row:
  """Host-side state of one session: dMel context, the last frame (resized) and FIFO queues
  for text slots."""

  session_id: str
  audio_context: np.ndarray | None = None
  last_frame: np.ndarray | None = None
  pending_text: collections.deque = dataclasses.field(default_factory=collections.deque)
  pending_bg: collections.deque = dataclasses.field(default_factory=collections.deque)


class Engine:
  """`Engine(program, batch_size)`; see the module docstring."""

  def __init__(self, program: Program, batch_size: int | None = None, seed: int = 0):
    batch_size = batch_size or program.batch_size
    if not batch_size or program.batch_size not in (None, batch_size):
      raise InputError("batch size", f"got {batch_size}, the program takes "
                       f"{program.batch_size or 'any batch size > 0'}")
    self.layout = program.layout
    self.vocab_size = program.vocab_size
    self.dmel_spec = program.dmel_spec
    self.batch_size = batch_size
    self.params, self._step, self._reset = program.params, program.step, program.reset
    self._prepare_params = program.prepare_params
    self.state = program.init_state(batch_size, seed)
    self.rows: list[_Row | None] = [None] * batch_size
    self._seed = seed

  def set_params(self, params) -> None:
    """Serves other weights of the same model (e.g. a newer training step); no recompile."""
    self.params = self._prepare_params(params)

  # Rows --------------------------------------------------------------------------------------

  def add(self, session_id: str) -> int:
    """Starts a session in a free row and returns the row."""
    for row, occupant in enumerate(self.rows):
      if occupant is None:
        self.rows[row] = _Row(session_id)
        self.reset(row)
        return row
    raise RuntimeError(f"all {self.batch_size} rows are busy; evict a session first")

  def reset(self, row: int) -> None:
    """Restarts the session in `row` from micro-turn 0 (same row, fresh cache and RNG).

    The session's RNG derives from (engine seed, session id): the same session replays the
    same samples whichever row it lands in.
    """
    self._check_row(row)
    rows = np.zeros(self.batch_size, bool)
    rows[row] = True
    seed = zlib.crc32(f"{self._seed}/{self.rows[row].session_id}".encode()) & 0x7FFFFFFF
    self.state = self._reset(self.state, jnp.asarray(rows), jnp.asarray(seed, jnp.int32))
    self.rows[row] = _Row(self.rows[row].session_id)

  def evict(self, row: int) -> None:
    self._check_row(row)
    self.rows[row] = None

  def push_background(self, row: int, ids: Iterable[int]) -> None:
    """Queues background-result tokens; they fill the row's bg slots first in, first out."""
    self._check_row(row)
    self.rows[row].pending_bg.extend(int(i) for i in ids)

  def _check_row(self, row: int) -> None:
    if (not isinstance(row, (int, np.integer)) or isinstance(row, bool)
        or not 0 <= row < self.batch_size or self.rows[row] is None):
      raise InputError(f"row {row!r}", "no session in this row")

  # Stepping ----------------------------------------------------------------------------------

  def step(self, chunks: Mapping[int, Chunk | None]) -> dict[int, TurnOutput]:
    """Runs one micro-turn for every live session; `chunks[row]` None or absent = missing."""
    if not isinstance(chunks, Mapping):
      raise InputError("chunks", f"expected a mapping of row -> Chunk, got "
                       f"{type(chunks).__name__}")
    for row, chunk in chunks.items():
      self._check_row(row)
      if chunk is not None:
        self._validate(row, chunk)
    inputs = empty_inputs(self.layout, self.batch_size)
    missing = {}
    for row, occupant in enumerate(self.rows):
      if occupant is not None:
        chunk = chunks.get(row)
        missing[row] = chunk is None
        self._fill(inputs, row, occupant, chunk or Chunk())
    start = time.perf_counter()
    self.state, out = self._step(self.params, self.state, inputs)
    out = jax.device_get({k: out[k] for k in ("turn",) + self.layout.output_keys})
    step_ms = (time.perf_counter() - start) * 1000
    return {row: TurnOutput(turn=int(out["turn"][row]),
                            user_transcript=out["user_transcript"][row],
                            text_out=out["text_out"][row], audio_out=out["audio_out"][row],
                            missing_input=missing[row], step_ms=step_ms)
            for row in missing}

  def _validate(self, row: int, chunk: Chunk) -> None:
    where = f"session {self.rows[row].session_id!r} chunk"
    if not isinstance(chunk, Chunk):
      raise InputError(where, f"expected a Chunk or None, got {type(chunk).__name__}")
    n = self.layout.chunk_samples
    if chunk.audio is not None:
      audio = _array(chunk.audio, f"{where}.audio")
      if audio.shape != (n,) or not np.issubdtype(audio.dtype, np.floating):
        raise InputError(f"{where}.audio", f"expected float [{n}] (200 ms at 16 kHz), got "
                         f"{audio.dtype} {list(audio.shape)}")
      if not np.all(np.isfinite(audio)):
        raise InputError(f"{where}.audio", "contains NaN or inf samples")
    if chunk.frame is not None:
      frame = _array(chunk.frame, f"{where}.frame")
      if (frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8
          or 0 in frame.shape):
        raise InputError(f"{where}.frame", f"expected uint8 [H, W, 3] with H, W >= 1, got "
                         f"{frame.dtype} {list(frame.shape)}")
    ids = chunk.text_ids
    if not isinstance(ids, (tuple, list)) or not all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
      raise InputError(f"{where}.text_ids", f"expected a tuple of token ids, got {ids!r:.80}")
    bad = [int(i) for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise InputError(f"{where}.text_ids", f"ids {bad[:3]} outside [0, {self.vocab_size})")

  def _fill(self, inputs: dict[str, np.ndarray], row: int, occupant: _Row, chunk: Chunk) -> None:
    layout = self.layout
    if chunk.audio is not None:
      audio = np.asarray(chunk.audio, np.float32)
      bins = dmel.dmel(audio, self.dmel_spec, occupant.audio_context)
      occupant.audio_context = dmel.next_context(occupant.audio_context, audio, self.dmel_spec)
      inputs["audio_in"][row] = bins.reshape(inputs["audio_in"].shape[1:])
    else:  # silence: the dMel context restarts from zeros as a silent chunk would leave it
      occupant.audio_context = None
    if chunk.frame is not None:
      frame = video.resize(np.asarray(chunk.frame), layout.video_height, layout.video_width)
      previous = frame if occupant.last_frame is None else occupant.last_frame
      inputs["video"][row] = video.slot_patches(frame, previous, layout)
      inputs["video_mask"][row] = True
      occupant.last_frame = frame
    occupant.pending_text.extend(chunk.text_ids)
    for kind, queue in ((SlotKind.TEXT_IN, occupant.pending_text),
                        (SlotKind.BG, occupant.pending_bg)):
      for slot in range(min(layout.count(kind), len(queue))):
        inputs[GROUP_KEYS[kind]][row, slot] = queue.popleft()


def _array(value, where: str) -> np.ndarray:
  try:
    return np.asarray(value)
  except (TypeError, ValueError) as e:  # e.g. ragged nested lists
    raise InputError(where, f"expected an array ({e})") from None


def run(engine: Engine, streams: Mapping[int, Iterable[Chunk | None]], *, realtime: bool = False,
        on_turn: Callable[[dict[int, TurnOutput]], None] | None = None) -> list[dict[int, TurnOutput]]:
  """Drives the engine over per-row chunk streams until every stream ends.

  With `realtime`, micro-turns start on a 200 ms clock (a step that overruns delays the next
  start rather than skipping); otherwise as fast as the steps go. Returns every turn's outputs.
  """
  iterators = {row: iter(chunks) for row, chunks in streams.items()}
  period = engine.layout.chunk_ms / 1000
  history = []
  next_start = time.perf_counter()
  while iterators:
    chunks = {}
    for row in list(iterators):
      try:
        chunks[row] = next(iterators[row])
      except StopIteration:
        del iterators[row]
    if not chunks:
      break
    if realtime:
      time.sleep(max(0.0, next_start - time.perf_counter()))
      next_start = max(next_start + period, time.perf_counter())
    outputs = engine.step(chunks)
    outputs = {row: out for row, out in outputs.items() if row in chunks}
    history.append(outputs)
    if on_turn is not None:
      on_turn(outputs)
  return history


def latency_summary(step_ms: Iterable[float], chunk_ms: int) -> dict[str, float]:
  """p50/p90/p99 step time and the real-time factor (median step over micro-turn length)."""
  values = np.asarray(list(step_ms), np.float64)
  p50, p90, p99 = (float(np.percentile(values, q)) for q in (50, 90, 99))
  return {"p50_step_ms": p50, "p90_step_ms": p90, "p99_step_ms": p99, "rtf": p50 / chunk_ms,
          "micro_turns": int(values.size)}
