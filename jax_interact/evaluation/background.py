"""How the evaluation replays an episode's background job for the model's own `<delegate>`.

The episode records when its reference model delegated (`delegate_s`) and when each result word
arrived. In evaluation the job starts when the evaluated model emits its first `<delegate>`, and
each result word arrives as long after that as it did after the reference delegation. A model
that never delegates never gets the result. The words enter the background slots in the format
the data pipeline uses: `<bg>` before the first word, `</bg>` after the last. The replay itself
runs in the orchestrator with a `RecordedWorker` (jax_interact/background/); this module says
which words a scorer should expect and when.
"""

from __future__ import annotations

from jax_interact.streams.episode import Episode


def replayed_results(episode: Episode, model_delegate_s: float) -> list[tuple[str, float]]:
  """(word, arrival wall time) of the episode's first job, started at `model_delegate_s`."""
  jobs = episode.delegations()
  if not jobs:
    return []
  shift_s = model_delegate_s - float(jobs[0]["time_s"])
  return [(str(w["text"]), round(float(w["time_s"]) + shift_s, 3))
          for w in jobs[0].get("result_words", [])]

