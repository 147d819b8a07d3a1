"""Episode -> per-micro-turn arrays of the batch format (streams/layout.py), by the timing rule.

Every micro-turn of the episode gets its slot groups (leading axis = micro-turns):
  text_in          typed user text, at the micro-turn the event is heard in
  video, video_mask the latest frame heard by the end of the micro-turn, as patches
  scene_event      whether the micro-turn's frame is the first to show a task event
  quiet            whether the micro-turn's output window overlaps a quiet interval
  audio_in         dMel of the user track over the input window [tT, (t+1)T)
  bg               background-job result words at their arrival micro-turns, in <bg> ... </bg>
  user_transcript  user words at the micro-turn in which each word ends
  text_out         model words (and <delegate>) one micro-turn before each starts
  audio_out        dMel of the model track over the output window [(t+1)T, (t+2)T)
Empty slots hold <pad> (inputs) or <sil> / silence bins (outputs). Tokens that do not fit a
micro-turn's slots spill into the next micro-turn(s); `stats` counts them, and the tokens that
would spill past the end of the episode.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from jax_interact.errors import ConfigError, InputError
from jax_interact.streams import audio, dmel, timing, video
from jax_interact.streams import tokenizer as tok
from jax_interact.streams.episode import Episode
from jax_interact.streams.layout import Layout, Token, empty_value


def place_tokens(items: Iterable[tuple[int, list[int]]], n_turns: int, slots: int,
                 empty_id: int) -> tuple[np.ndarray, int, int]:
  """Lays (micro-turn, tokens) items into int32 [n_turns, slots]: (ids, spilled, dropped).

  Items are placed in order of micro-turn (stable), each after the previous one; tokens that
  do not fit their micro-turn continue in the next ones (`spilled` counts tokens placed later
  than asked), tokens past the last micro-turn are `dropped`.
  """
  flat = np.full(n_turns * slots, empty_id, np.int32)
  cursor = spilled = dropped = 0
  for turn, tokens in sorted(items, key=lambda item: item[0]):
    start = max(cursor, turn * slots)
    for position in range(start, start + len(tokens)):
      if position >= len(flat):
        dropped += 1
      elif position // slots > turn:
        spilled += 1
    kept = tokens[:max(0, len(flat) - start)]
    flat[start:start + len(kept)] = kept
    cursor = start + len(tokens)
  return flat.reshape(n_turns, slots), spilled, dropped


_REQUIRED = object()


def _field(record: Any, key: str, kind: type | tuple[type, ...], where: str,
           default: Any = _REQUIRED) -> Any:
  """record[key], checked to be a `kind`; InputError naming the field otherwise."""
  if not isinstance(record, dict) or (key not in record and default is _REQUIRED):
    raise InputError(f"{where}.{key}", "missing")
  value = record.get(key, default)
  if not isinstance(value, kind) or isinstance(value, bool):
    expected = kind.__name__ if isinstance(kind, type) else "a number"
    raise InputError(f"{where}.{key}", f"got {value!r}, expected {expected}")
  return value


def _token_items(episode: Episode, tokenizer: tok.Tokenizer,
                 chunk_ms: int) -> tuple[dict[str, list[tuple[int, list[int]]]], int]:
  """(micro-turn, tokens) items of the text slot groups with a source in an episode, in time
  order; clamped word count."""
  # (time_ms, turn, tokens) per group
  timed = {group: [] for group in ("text_in", "bg", "user_transcript", "text_out")}
  clamped = 0
  for word in episode.words:
    if word.speaker == "user":
      turn = timing.transcript_turn(word.end_s, chunk_ms)
      timed["user_transcript"].append((timing.to_ms(word.end_s), turn, tokenizer.encode(word.text)))
    else:
      turn, was_clamped = timing.model_word_turn(word.start_s, chunk_ms)
      clamped += was_clamped
      timed["text_out"].append((timing.to_ms(word.start_s), turn, tokenizer.encode(word.text)))
  for i, event in enumerate(episode.events):
    where = f"episode {episode.index}.events[{i}]"
    if event["type"] == "typed":
      text = _field(event, "text", str, where)
      time_s = event["time_s"]
      timed["text_in"].append((timing.to_ms(time_s), timing.input_turn(time_s, chunk_ms),
                               tokenizer.encode(text)))
    elif event["type"] == "delegate":
      turn, was_clamped = timing.model_word_turn(event["time_s"], chunk_ms)
      clamped += was_clamped
      timed["text_out"].append((timing.to_ms(event["time_s"]), turn, [tok.DELEGATE]))
      results = _field(event, "result_words", list, where, default=[])
      for j, word in enumerate(results):
        text = _field(word, "text", str, f"{where}.result_words[{j}]")
        arrival_s = _field(word, "time_s", (int, float), f"{where}.result_words[{j}]")
        tokens = ([tok.BG] if j == 0 else []) + tokenizer.encode(text)
        tokens += [tok.BG_END] if j == len(results) - 1 else []
        timed["bg"].append((timing.to_ms(arrival_s), timing.input_turn(arrival_s, chunk_ms),
                            tokens))
  items = {group: [(turn, tokens) for _, turn, tokens in sorted(entries, key=lambda e: e[:2])]
           for group, entries in timed.items()}
  return items, clamped


def _dmel_turns(samples: np.ndarray, first_turn: int, n_turns: int, layout: Layout,
                spec: dmel.DMelSpec) -> np.ndarray:
  """uint8 [n_turns, K, k, M]: dMel of micro-turns [first_turn, first_turn + n_turns)."""
  total = (first_turn + n_turns) * layout.chunk_samples
  padded = np.zeros(total, np.float32)
  padded[:min(total, len(samples))] = samples[:total]
  frames_FM = dmel.dmel(padded, spec)[first_turn * layout.frames_per_turn:]
  k = layout.frames_per_token
  return frames_FM.reshape(n_turns, layout.frames_per_turn // k, k, layout.n_mels)


def _output_heard_in(intervals_s, n_turns: int, chunk_ms: int) -> np.ndarray:
  """bool [n_turns]: the micro-turns whose output would be heard during one of `intervals_s`."""
  flags = np.zeros(n_turns, bool)
  flags[timing.output_turns_in(intervals_s, n_turns, chunk_ms, overlapping=True)] = True
  return flags


def featurize_episode(episode: Episode, layout: Layout, tokenizer: tok.Tokenizer,
                      stream_config) -> tuple[dict[str, np.ndarray], dict[str, int]]:
  """(tracks, stats): the batch-format arrays for all micro-turns of `episode`."""
  episode.validate(f"episode {episode.index}")
  chunk_ms = layout.chunk_ms
  n_turns = episode.num_turns(chunk_ms)
  spec = dmel.DMelSpec.from_config(stream_config)

  patches, video_mask = video.turn_patches(episode.video, episode.video_times_s, n_turns, layout)
  quiet = _output_heard_in(episode.annotations.get("quiet_s", []), n_turns, chunk_ms)
  user_speaks = _output_heard_in([(w.start_s, w.end_s) for w in episode.user_words()], n_turns,
                                 chunk_ms)
  tracks = {
      "turn": np.arange(n_turns, dtype=np.int32),
      "turn_mask": np.ones(n_turns, bool),
      "video": patches,
      "video_mask": video_mask,
      "scene_event": video.event_turns([e["time_s"] for e in episode.task_events()],
                                       episode.video_times_s, n_turns, chunk_ms),
      "quiet": quiet,
      "user_speaks": user_speaks,
      "audio_in": _dmel_turns(audio.from_int16(episode.user_audio), 0, n_turns, layout, spec),
      "audio_out": _dmel_turns(audio.from_int16(episode.model_audio), 1, n_turns, layout, spec),
  }
  items, clamped = _token_items(episode, tokenizer, chunk_ms)
  stats = {"n_turns": n_turns, "clamped_model_words": clamped}
  text_groups = layout.groups(token=Token.TEXT)
  for group in text_groups:  # a group no episode field feeds stays empty
    group_items, slots = items.get(group.key, []), layout.count(group.kind)
    if group_items and not slots:
      raise ConfigError(f"stream.{group.key}_slots",
                        f"0, but episode {episode.index} ({episode.task}) has {group.key} tokens "
                        "to place; expected at least 1")
    tracks[group.key], spilled, dropped = place_tokens(group_items, n_turns, slots, group.empty)
    stats[f"{group.key}_spilled_tokens"] = spilled
    stats[f"{group.key}_dropped_tokens"] = dropped
  stats["spilled_tokens"] = sum(stats[f"{g.key}_spilled_tokens"] for g in text_groups)
  stats["dropped_at_end"] = sum(stats[f"{g.key}_dropped_tokens"] for g in text_groups)
  return tracks, stats


def window(tracks: dict[str, np.ndarray], start: int, n: int) -> dict[str, np.ndarray]:
  """Micro-turns [start, start + n) of `tracks`; past the end, empty slots and turn_mask False."""
  total = len(tracks["turn"])
  stop = min(start + n, total)
  out = {}
  for key, array in tracks.items():
    part = array[start:stop]
    if key == "turn":
      out[key] = np.arange(start, start + n, dtype=array.dtype)
      continue
    if len(part) < n:
      fill = np.full((n - len(part), *array.shape[1:]), empty_value(key), array.dtype)
      part = np.concatenate([part, fill])
    out[key] = part
  return out


def describe_turns(tracks: dict[str, np.ndarray], tokenizer: tok.Tokenizer,
                   chunk_ms: int = 200) -> list[dict[str, Any]]:
  """Per micro-turn inside the episode: its start time and each text slot group decoded."""
  rows = []
  for i in np.flatnonzero(tracks["turn_mask"]):
    t = int(tracks["turn"][i])
    rows.append({
        "t": t,
        "start_s": t * chunk_ms / 1000,
        "user_text_in": tokenizer.decode(tracks["text_in"][i]),
        "background": tokenizer.decode(tracks["bg"][i], show_specials=True),
        "user_transcript": tokenizer.decode(tracks["user_transcript"][i]),
        "model_text": tokenizer.decode(tracks["text_out"][i], show_specials=True),
    })
  return rows
