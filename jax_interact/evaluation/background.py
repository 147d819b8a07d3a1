"""How the evaluation replays an episode's background job for the model's own `<delegate>`.

The episode records when its reference model delegated (`delegate_s`) and when each result word
arrived. In evaluation the job starts when the evaluated model emits its first `<delegate>`, and
each result word arrives as long after that as it did after the reference delegation. A model
that never delegates never gets the result. The words enter the background slots in the format
the data pipeline uses: `<bg>` before the first word, `</bg>` after the last.
"""

from __future__ import annotations

from data_pipelines.episode import Episode
from jax_interact.streams import timing
from jax_interact.streams.tokenizer import BG, BG_END, Tokenizer


def replayed_results(episode: Episode, model_delegate_s: float) -> list[tuple[str, float]]:
  """(word, arrival wall time) of the episode's first job, started at `model_delegate_s`."""
  jobs = episode.delegations()
  if not jobs:
    return []
  shift_s = model_delegate_s - float(jobs[0]["time_s"])
  return [(str(w["text"]), round(float(w["time_s"]) + shift_s, 3))
          for w in jobs[0].get("result_words", [])]


def schedule(episode: Episode, model_delegate_s: float, tokenizer: Tokenizer,
             chunk_ms: int) -> dict[int, list[int]]:
  """{input micro-turn: background token ids arriving in it} for the replayed job."""
  results = replayed_results(episode, model_delegate_s)
  arrivals: dict[int, list[int]] = {}
  for j, (text, time_s) in enumerate(results):
    ids = ([BG] if j == 0 else []) + tokenizer.encode(text)
    ids += [BG_END] if j == len(results) - 1 else []
    arrivals.setdefault(timing.input_turn(time_s, chunk_ms), []).extend(ids)
  return arrivals
