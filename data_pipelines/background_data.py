"""Training sequences for the background LM (SPEC §5): context package, then the job's result.

Every background job recorded in a dataset (a `delegate` event with its `result_words`) gives one
sequence: `<bos>` + the context package the runtime would render when the model delegates
(jax_interact/background/transcript.py) + `<bg>` + the result words + `<eos>`, right-padded
with `<pad>` to `config.data.seq_len`. `loss_mask` is 1 on the result and `<eos>` only, so the
model reads packages and learns to answer them. Batches are {"tokens": int32 [B, T],
"loss_mask": float32 [B, T]}, host-local like data_pipelines/grain_pipeline.py, whose iterator
(with get_state/set_state and the recorded worker count) they share. Training shuffles and
repeats; evaluation cycles through the split's jobs in order.
"""

from __future__ import annotations

import functools
import os

import grain
import jax
import ml_collections
import numpy as np

from data_pipelines import dataset
from data_pipelines import grain_pipeline
from data_pipelines.grain_pipeline import DataIterator, host_batch_size
from jax_interact.background import transcript as transcript_lib
from jax_interact.errors import InputError
from jax_interact.streams.tokenizer import EOS, PAD, Tokenizer


@functools.cache
def _tokenizer(data_dir: str) -> Tokenizer:
  return dataset.load_tokenizer(data_dir)


def sequence(episode, job: int, tokenizer: Tokenizer, chunk_ms: int,
             seq_len: int) -> dict[str, np.ndarray]:
  """The training sequence of the `job`-th background job of `episode`."""
  event = episode.delegations()[job]
  result = [i for word in event.get("result_words", []) for i in tokenizer.encode(str(word["text"]))]
  result = result[:seq_len // 2] + [EOS]
  package = transcript_lib.from_episode(episode, float(event["time_s"]), tokenizer,
                                        chunk_ms).package(tokenizer)
  prompt = transcript_lib.package_ids(package, tokenizer, seq_len - len(result))
  tokens = np.full(seq_len, PAD, np.int32)
  loss_mask = np.zeros(seq_len, np.float32)
  tokens[:len(prompt) + len(result)] = prompt + result
  loss_mask[len(prompt):len(prompt) + len(result)] = 1.0
  return {"tokens": tokens, "loss_mask": loss_mask}


class _Jobs:
  """Random access to (episode, job index) for every background job of a split."""

  def __init__(self, episodes: dataset.EpisodeSource, jobs: list[tuple[int, int]]):
    self._episodes = episodes
    self._jobs = jobs

  def __len__(self) -> int:
    return len(self._jobs)

  def __getitem__(self, i: int):
    position, job = self._jobs[i]
    return self._episodes[position], job


class ToSequence(grain.transforms.Map):
  """(episode, job) -> its training sequence (picklable for worker processes)."""

  def __init__(self, data_dir: str, chunk_ms: int, seq_len: int):
    self._data_dir = data_dir
    self._chunk_ms = chunk_ms
    self._seq_len = seq_len

  def map(self, item) -> dict[str, np.ndarray]:
    episode, job = item
    return sequence(episode, job, _tokenizer(self._data_dir), self._chunk_ms, self._seq_len)


def split_jobs(data_dir: str | os.PathLike, split: str) -> list[tuple[int, int]]:
  """(position in the split, job index) of every recorded job with a result, from the manifest."""
  manifest = dataset.read_manifest(data_dir)
  entries = {e["index"]: e for e in manifest["episodes"]}
  jobs = []
  for position, index in enumerate(manifest["splits"].get(split, [])):
    delegations = [e for e in entries[index].get("events", []) if e.get("type") == "delegate"]
    jobs += [(position, k) for k, e in enumerate(delegations) if e.get("result_words")]
  return jobs


def make_dataset(config: ml_collections.ConfigDict, data_dir: str | os.PathLike, split: str, *,
                 seed: int, train: bool = True) -> grain.IterDataset:
  """Host-local batches of background-LM sequences; every split repeats forever."""
  batch_size = host_batch_size(config)
  jobs = split_jobs(data_dir, split)
  if not jobs:
    hint = "generate with --tasks delegate" if train else "or set --config.train.eval_batches=0"
    raise InputError(f"{data_dir}", f"split {split!r} holds no background job (no `delegate` "
                     f"episode with result words); {hint}")
  mine = jobs[jax.process_index()::jax.process_count()] or jobs
  source = grain.MapDataset.source(_Jobs(dataset.open_split(data_dir, split), mine))
  if train:
    source = source.shuffle(seed)
  sequences = source.repeat(None).map(ToSequence(str(data_dir), config.stream.chunk_ms,
                                                 config.data.seq_len))
  batches = sequences.batch(batch_size, drop_remainder=True).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=config.data.prefetch))
  return grain_pipeline.prefetched(batches, config)


def make_iterator(config: ml_collections.ConfigDict, data_dir: str | os.PathLike, split: str,
                  *, seed: int, train: bool = True) -> DataIterator:
  """An iterator over `make_dataset(...)` with get_state()/set_state() for checkpoints."""
  pipeline = make_dataset(config, data_dir, split, seed=seed, train=train)
  return DataIterator(iter(pipeline), config.data.num_workers)
