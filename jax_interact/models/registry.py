"""Model kinds (`config.model.kind`): the one table of what differs between them.

Each kind says how its model is built from a run's config (through the model's typed config),
its training loss (with the run's loss weights), its training examples (tokens per example,
random examples, the data pipeline that reads a dataset) and its terms of the counts of
counting.py (training FLOPs per token, the description, the activations of a train step), which
live beside each model.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np
from flax import nnx

from jax_interact.models import background, interaction
from jax_interact.models.background import BackgroundConfig, BackgroundModel, background_loss_fn
from jax_interact.models.interaction import InteractionConfig, InteractionModel
from jax_interact.models.losses import LossWeights, loss_fn, noise_targets
from jax_interact.streams.layout import Layout, random_batch

Batch = dict[str, np.ndarray]
LossFn = Callable[..., Any]  # loss(model, batch, rng) -> (loss, metrics)


@dataclasses.dataclass(frozen=True)
class ModelKind:
  build: Callable[[ml_collections.ConfigDict, nnx.Rngs], nnx.Module]  # from its typed config
  loss: Callable[[ml_collections.ConfigDict, bool], LossFn]  # (config, train) -> loss
  example_tokens: Callable[[ml_collections.ConfigDict], int]  # sequence tokens of an example
  random_examples: Callable[[ml_collections.ConfigDict, int, int], Batch]  # (config, n, seed)
  data_pipeline: str  # module whose make_iterator(config, dir, split, seed=, train=) reads data
  # (config, forward matmul FLOPs by the model's weight_applications) -> FLOPs per token
  train_flops_per_token: Callable[[ml_collections.ConfigDict, float], float]
  # (config, parameters per top-level part, training FLOPs per token) -> a few lines
  describe: Callable[[ml_collections.ConfigDict, dict[str, int], float], str]
  # (config, examples per micro-batch, attention kernel) -> (tokens through the main
  # transformer, keys a query's attention logits span, bytes of the other activations)
  train_activations: Callable[[ml_collections.ConfigDict, float, str],
                              tuple[float, float, float]]


def _interaction_loss(config: ml_collections.ConfigDict, train: bool) -> LossFn:
  return functools.partial(loss_fn, weights=LossWeights.from_config(config.loss),
                           feedback_noise=config.train.feedback_noise if train else 0.0,
                           feedback_noise_on=noise_targets(config.train.feedback_noise_on),
                           own_feedback=config.train.own_feedback if train else 0.0,
                           freq_masks=config.train.freq_masks if train else 0,
                           freq_mask_channels=config.train.freq_mask_channels,
                           silence_threshold=config.sample.silence_threshold,
                           continue_threshold=config.sample.continue_threshold,
                           voicing_threshold=config.sample.voicing_threshold)


def _build_interaction(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> InteractionModel:
  return InteractionModel(InteractionConfig.from_config(config), rngs=rngs)


def _build_background(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> BackgroundModel:
  return BackgroundModel(BackgroundConfig.from_config(config), rngs=rngs,
                         moe_aux_weight=config.loss.moe_aux_weight)


def _random_windows(config: ml_collections.ConfigDict, n: int, seed: int) -> Batch:
  return random_batch(Layout.from_config(config.stream), n, config.data.window,
                      config.model.vocab_size, config.stream.dmel_bins, seed=seed)


def _random_sequences(config: ml_collections.ConfigDict, n: int, seed: int) -> Batch:
  tokens = np.random.default_rng(seed).integers(
      0, config.model.vocab_size, (n, config.data.seq_len), dtype=np.int32)
  return {"tokens": tokens, "loss_mask": np.ones(tokens.shape, np.float32)}


KINDS: dict[str, ModelKind] = {
    "interaction": ModelKind(
        build=_build_interaction, loss=_interaction_loss,
        example_tokens=lambda c: c.data.window * Layout.from_config(c.stream).turn_len,
        random_examples=_random_windows, data_pipeline="data_pipelines.grain_pipeline",
        train_flops_per_token=interaction.train_flops_per_token,
        describe=interaction.describe, train_activations=interaction.train_activations),
    "background": ModelKind(
        build=_build_background, loss=lambda config, train: background_loss_fn,
        example_tokens=lambda c: c.data.seq_len,
        random_examples=_random_sequences, data_pipeline="data_pipelines.background_data",
        train_flops_per_token=background.train_flops_per_token,
        describe=background.describe, train_activations=background.train_activations),
}


def kind_of(config: ml_collections.ConfigDict) -> ModelKind:
  return KINDS[config.model.kind]


def build(config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> InteractionModel | BackgroundModel:
  """The model `config.model.kind` names, built from its typed config."""
  return kind_of(config).build(config, rngs)


def loss_for(config: ml_collections.ConfigDict, train: bool = True) -> LossFn:
  """`loss(model, batch, rng) -> (loss, metrics)` of the model `config.model.kind` names, with
  the config's loss weights; `train` adds the training-only feedback noise and own-prediction
  feedback."""
  return kind_of(config).loss(config, train)
