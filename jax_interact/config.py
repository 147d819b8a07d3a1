"""Configs: short Python files in `configs/` returning an ml_collections ConfigDict.

Every knob lives in `defaults()` below with a comment; a config file starts from it and changes
what differs (`configs/tiny.py`). Command lines override keys as `--config.a.b=value`; unknown
keys and out-of-range values raise `ConfigError` naming the key.
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
from typing import Any, Callable, Sequence

import ml_collections

from jax_interact.errors import ConfigError
from jax_interact.models import attention_kernels, losses, registry
from jax_interact.streams import timing


def defaults() -> ml_collections.ConfigDict:
  """All config keys with their default (the `base` model size)."""
  c = ml_collections.ConfigDict()
  c.name = "base"
  c.seed = 0

  # Stream format (SPEC §3). Slot counts derive from these: see streams.layout.Layout.
  c.stream = ml_collections.ConfigDict()
  c.stream.chunk_ms = timing.CHUNK_MS  # micro-turn length T
  c.stream.sample_rate = timing.SAMPLE_RATE
  c.stream.n_mels = 80
  c.stream.win_ms = 25
  c.stream.hop_ms = 10
  c.stream.dmel_bins = 16  # ordinal intensity bins per mel channel
  c.stream.dmel_log_min = -11.5  # natural-log mel power clipped to [min, max] before binning
  c.stream.dmel_log_max = 2.5
  c.stream.frames_per_token = 4  # k: dMel frames per audio token (40 ms)
  c.stream.video_height = 160  # frames are resized to this (a multiple of patch)
  c.stream.video_width = 160
  c.stream.patch = 40
  # Each video slot also holds the patch the previous micro-turn saw (channels 3-5), so the
  # stem sees motion: what changed since the last frame, without the still background.
  c.stream.video_motion = False
  c.stream.text_in_slots = 4  # K_ti: typed user text tokens per micro-turn
  c.stream.bg_slots = 4  # K_bg: background-result tokens per micro-turn
  c.stream.user_transcript_slots = 4  # K_ut
  c.stream.text_out_slots = 4  # K_to

  # Data (SPEC §8).
  c.data = ml_collections.ConfigDict()
  c.data.source = "dataset"  # dataset: read data.dir | random: random batches (benchmarks, tests)
  c.data.dir = ""  # dataset written by `jax-interact data generate`
  c.data.window = 32  # micro-turns per training window
  c.data.batch_size = 8  # global batch (windows)
  c.data.num_workers = 2  # Grain worker processes (0: in-process)
  c.data.prefetch = 2  # batches buffered per worker
  c.data.eval_split = "validation"
  # Training windows drawn per epoch from each episode of a task, "task:n,task:n" (tasks not
  # named: 1; 0 leaves a task out): a family mix other than the dataset's, without new data.
  c.data.task_repeats = ""
  # Share of training windows that start at an episode's first micro-turn, where its request is
  # (the rest start anywhere, uniformly); 0: all uniform.
  c.data.first_window_share = 0.0
  # The tasks that share applies to, "task,task" ("": every task); other tasks' windows: uniform.
  c.data.first_window_tasks = ""
  # The same for windows that end at an episode's last micro-turn (with uniform starts, an
  # episode's first and last seconds fall in far fewer windows than its middle); the first and
  # last shares add up to at most 1.
  c.data.last_window_share = 0.0
  c.data.last_window_tasks = ""
  c.data.seq_len = 256  # background LM (model.kind "background"): tokens per training sequence

  # Interaction model (SPEC §4).
  c.model = ml_collections.ConfigDict()
  c.model.kind = "interaction"  # interaction (SPEC §4) | background (the text LM of SPEC §5)
  c.model.vocab_size = 1024  # must be >= the tokenizer's size
  c.model.d_model = 512
  c.model.n_layers = 8
  c.model.n_heads = 8
  c.model.n_kv_heads = 4
  c.model.head_dim = 64
  c.model.d_ff = 1536
  c.model.rope_theta = 10000.0
  c.model.window_turns = 64  # W: sliding attention window in micro-turns
  c.model.sinks = 4  # S: sink tokens always attended
  c.model.local_layers = 2  # local decoder depth
  c.model.local_d_model = 256
  c.model.local_heads = 4
  c.model.local_d_ff = 768
  c.model.flow_hidden = 512  # flow-matching head MLP width
  c.model.flow_steps = 4  # Euler steps at sampling
  # What the model hears of its own audio: "dmel" (the bag of its dMel bins) or "voicing" (only
  # whether each audio token is voiced: the same in training and streaming).
  c.model.audio_feedback = "dmel"
  # Text logits from their own [d_local, vocab] table ("separate") or scored against the text
  # embedding table ("tied": a token the model reads, such as a background result, it can say).
  c.model.text_head = "separate"
  # A copy head (models/copy_head.py): text slots may also point at the bg tokens of the
  # micro-turns they see (a background result's number), gated against the text head.
  c.model.text_copy = False
  # With the copy head: the bg token that arrived after the last word a text slot's stream said
  # gets a learned bias (the last piece of a number split in two; a result resumed after a pause).
  c.model.copy_follow = False
  c.model.num_experts = 0  # 0: dense SwiGLU; >0: mixture of experts
  c.model.experts_per_token = 2
  # MoE capacity factor: 0 computes every routed token (ragged_dot); c > 0 gives each expert room
  # for c times its even share of a sequence's tokens and drops the rest (models/moe.py).
  c.model.expert_capacity = 0.0
  c.model.dtype = "float32"  # compute dtype: float32 or bfloat16 (accelerator configs)
  c.model.param_dtype = "float32"  # storage of parameters and optimizer state
  c.model.remat = "none"  # none | full | dots (jax.checkpoint policy per layer)
  c.model.scan_layers = True
  # Kernel of training attention (models/attention_kernels.py): auto picks by platform (cuDNN on
  # GPUs in bf16, splash on TPUs, blocked XLA otherwise); xla | blocked | cudnn | splash force one.
  c.model.attention = "auto"

  # Losses.
  c.loss = ml_collections.ConfigDict()
  c.loss.text_weight = 1.0
  c.loss.transcript_weight = 1.0
  c.loss.voicing_weight = 1.0  # voiced/unvoiced cross-entropy of audio output slots
  c.loss.audio_weight = 1.0  # flow matching on voiced audio output slots
  c.loss.silence_weight = 0.1  # weight of `<sil>` targets in the text losses
  c.loss.moe_aux_weight = 0.01  # load-balancing loss of mixture-of-experts layers
  # > 0: a head on the temporal state predicts, per micro-turn, whether its frame is the first to
  # show a scene event (batch key `scene_event`): supervision that makes the video stem see.
  c.loss.scene_event_weight = 0.0
  # Scales the weight of the model's own silent output slots (a `<sil>` text target, an unvoiced
  # audio target) in micro-turns inside a quiet interval (batch key `quiet`): a pause's silence
  # weighed more than silence elsewhere. 1: no different.
  c.loss.quiet_scale = 1.0
  # Scales the weight of the model's own silent output slots in micro-turns whose output would be
  # heard while the user says a word (batch key `user_speaks`, from the episode's word times: the
  # user's audio also carries background noise): silence while the user speaks weighed more.
  # 1: no different.
  c.loss.user_speech_scale = 1.0

  # Streaming inference (SPEC §7).
  c.sample = ml_collections.ConfigDict()
  c.sample.temperature = 0.0  # 0: greedy text slots
  c.sample.top_p = 1.0  # nucleus sampling mass when temperature > 0
  c.sample.silence_threshold = 0.5  # a text slot stays `<sil>` while P(<sil>) is at least this
  c.sample.continue_threshold = 0.5  # ... and this instead after a word piece of its own stream
  c.sample.voicing_threshold = 0.5  # an audio slot is voiced above this voicing probability

  # Background jobs (SPEC §5): the runtime side of delegation.
  c.background = ml_collections.ConfigDict()
  c.background.max_new_tokens = 48  # LM worker: tokens generated per job at most
  c.background.timeout_s = 30.0  # stream seconds after which a job is cut off with `</bg>`
  c.background.slow_token_s = 2.0  # `tool:slow` test worker: seconds per token

  # Optimisation (SPEC §6).
  c.train = ml_collections.ConfigDict()
  c.train.steps = 10000
  c.train.lr = 3e-4
  c.train.warmup_steps = 200
  c.train.min_lr_ratio = 0.1  # cosine decays to lr * min_lr_ratio
  c.train.weight_decay = 0.1
  c.train.b1 = 0.9
  c.train.b2 = 0.95
  c.train.clip_norm = 1.0
  # > 0: keep an exponential moving average of the parameters with this decay (0.999 averages
  # about the last 1000 steps); the held-out loss, the in-training streaming eval, W/best and
  # every command that loads a trained run use the average. 0: the parameters as trained.
  c.train.ema_decay = 0.0
  c.train.grad_accum = 1
  # Seconds after which training stops as if preempted, at a checkpointed step (0: no limit);
  # counted from the start of `train`, featurizing and compiling included.
  c.train.time_limit_s = 0.0
  # Probability that a word token the model is fed back (its own text, its user transcript) is
  # replaced by a random word in training, targets unchanged: streaming feeds back the model's
  # own, imperfect tokens, and this teaches it not to depend on them being right.
  c.train.feedback_noise = 0.0
  # The fed-back streams that noise applies to, "transcript,text": the user transcript the model
  # writes (`transcript`), its own words (`text`), or both.
  c.train.feedback_noise_on = "transcript,text"
  # Probability that a fed-back text token is replaced by the model's own decision for it, from
  # a teacher-forced pass without gradient (parallel scheduled sampling; one more forward per
  # step): it learns to fall silent after its own, imperfect words, as it must when streaming.
  c.train.own_feedback = 0.0
  # SpecAugment's frequency masks on what the model hears (models/losses.py `with_masked_bands`):
  # in training, `freq_masks` bands (0: none) of up to `freq_mask_channels` adjacent mel channels
  # of the user's audio are silenced in each example, the same bands in all its micro-turns.
  c.train.freq_masks = 0
  c.train.freq_mask_channels = 0
  c.train.log_every_steps = 10
  c.train.eval_every_steps = 500
  c.train.eval_batches = 4
  # Streaming interactivity evaluation during training (training/interactivity.py): every N
  # steps (0: never) the first `interact_episodes` episodes of data.eval_split are streamed
  # through the engine and scored; the best mean score's step is kept in W/best.
  c.train.interact_every_steps = 0
  c.train.interact_episodes = 36
  c.train.interact_batch = 8  # engine rows (sessions streamed together)

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.max_to_keep = 3
  c.checkpoint.async_save = True

  # Mesh axes (-1 fills with the remaining devices) and logical-axis rules.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.expert = 1  # expert parallelism: MoE experts (and batch rows elsewhere) split over it
  c.mesh.tensor = 1
  return c


def _positive(x):
  return x > 0


def _non_negative(x):
  return x >= 0


def _fraction(x):
  return 0 < x <= 1


def _open_unit(x):
  return 0 < x < 1


def _one_of(*options):
  check = lambda x: x in options
  check.expected = f"one of {options}"
  return check


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "stream.chunk_ms": _positive,
    "stream.sample_rate": _positive,
    "stream.n_mels": _positive,
    "stream.win_ms": _positive,
    "stream.hop_ms": _positive,
    "stream.dmel_bins": lambda x: 2 <= x <= 256,
    "stream.frames_per_token": _positive,
    "stream.video_height": _positive,
    "stream.video_width": _positive,
    "stream.patch": _positive,
    "stream.text_in_slots": _non_negative,
    "stream.bg_slots": _non_negative,
    "stream.user_transcript_slots": _non_negative,
    "stream.text_out_slots": _positive,
    "data.source": _one_of("dataset", "random"),
    "data.window": _positive,
    "data.batch_size": _positive,
    "data.num_workers": _non_negative,
    "data.prefetch": _positive,
    "data.first_window_share": lambda x: 0 <= x <= 1,
    "data.last_window_share": lambda x: 0 <= x <= 1,
    "data.seq_len": _positive,
    "model.kind": _one_of(*registry.KINDS),
    "model.vocab_size": _positive,
    "model.d_model": _positive,
    "model.n_layers": _positive,
    "model.n_heads": _positive,
    "model.n_kv_heads": _positive,
    "model.head_dim": _positive,
    "model.d_ff": _positive,
    "model.window_turns": _positive,
    "model.sinks": _non_negative,
    "model.local_layers": _positive,
    "model.local_d_model": _positive,
    "model.local_heads": _positive,
    "model.local_d_ff": _positive,
    "model.flow_hidden": _positive,
    "model.flow_steps": _positive,
    "model.audio_feedback": _one_of("dmel", "voicing"),
    "model.text_head": _one_of("separate", "tied"),
    "model.num_experts": _non_negative,
    "model.experts_per_token": _positive,
    "model.expert_capacity": _non_negative,
    "model.dtype": _one_of("float32", "bfloat16"),
    "model.param_dtype": _one_of("float32", "bfloat16"),
    "model.remat": _one_of("none", "full", "dots"),
    "model.attention": _one_of(*attention_kernels.KERNELS),
    "loss.silence_weight": _non_negative,
    "loss.voicing_weight": _non_negative,
    "loss.moe_aux_weight": _non_negative,
    "loss.scene_event_weight": _non_negative,
    "loss.quiet_scale": _positive,
    "loss.user_speech_scale": _positive,
    "sample.temperature": _non_negative,
    "sample.top_p": _fraction,
    "sample.silence_threshold": _open_unit,
    "sample.continue_threshold": _open_unit,
    "sample.voicing_threshold": _open_unit,
    "background.max_new_tokens": _positive,
    "background.timeout_s": _positive,
    "background.slow_token_s": _non_negative,
    "train.steps": _positive,
    "train.lr": _positive,
    "train.warmup_steps": _non_negative,
    "train.min_lr_ratio": lambda x: 0 <= x <= 1,
    "train.weight_decay": _non_negative,
    "train.b1": lambda x: 0 <= x < 1,
    "train.b2": lambda x: 0 <= x < 1,
    "train.clip_norm": _positive,
    "train.ema_decay": lambda x: 0 <= x < 1,
    "train.grad_accum": _positive,
    "train.feedback_noise": lambda x: 0 <= x <= 1,
    "train.own_feedback": lambda x: 0 <= x <= 1,
    "train.freq_masks": _non_negative,
    "train.freq_mask_channels": _non_negative,
    "train.log_every_steps": _positive,
    "train.eval_every_steps": _positive,
    "train.eval_batches": _non_negative,
    "train.interact_every_steps": _non_negative,
    "train.interact_episodes": _positive,
    "train.interact_batch": _positive,
    "checkpoint.every_steps": _positive,
    "checkpoint.max_to_keep": _positive,
    "mesh.data": lambda x: x == -1 or x > 0,
    "mesh.fsdp": lambda x: x == -1 or x > 0,
    "mesh.expert": lambda x: x == -1 or x > 0,
    "mesh.tensor": lambda x: x == -1 or x > 0,
}

_EXPECTED = {_positive: "a value > 0", _non_negative: "a value >= 0", _fraction: "a value in (0, 1]",
             _open_unit: "a value in (0, 1)"}


def task_repeats(text: str, where: str = "config.data.task_repeats") -> dict[str, int]:
  """"turn_taking:1,delegate:3" -> {"turn_taking": 1, "delegate": 3}; ConfigError naming
  `where` for anything else."""
  repeats: dict[str, int] = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    task, _, count = item.partition(":")
    if not (task.strip() and count.strip().isdigit()) or task.strip() in repeats:
      raise ConfigError(where, f"got {item!r} in {text!r}, expected each task once as "
                        "task:n with n a whole number >= 0, e.g. 'delegate:3,turn_taking:1'")
    repeats[task.strip()] = int(count)
  return repeats


def validate(config: ml_collections.ConfigDict, where: str = "config") -> None:
  """Raises ConfigError for the first value out of range or inconsistent with another."""
  for key, check in _CHECKS.items():
    value = _get(config, key, where)
    if not check(value):
      expected = getattr(check, "expected", _EXPECTED.get(check, "a valid value"))
      raise ConfigError(f"{where}.{key}", f"got {value!r}, expected {expected}")
  task_repeats(config.data.task_repeats, f"{where}.data.task_repeats")
  losses.noise_targets(config.train.feedback_noise_on, f"{where}.train.feedback_noise_on")
  s, m = config.stream, config.model
  for dim in ("video_height", "video_width"):
    if s[dim] % s.patch:
      raise ConfigError(f"{where}.stream.{dim}", f"got {s[dim]}, expected a multiple of "
                        f"stream.patch={s.patch}")
  if s.chunk_ms % (s.hop_ms * s.frames_per_token):
    raise ConfigError(f"{where}.stream.chunk_ms", f"got {s.chunk_ms}, expected a multiple of "
                      f"hop_ms * frames_per_token = {s.hop_ms * s.frames_per_token}")
  if s.dmel_log_min >= s.dmel_log_max:
    raise ConfigError(f"{where}.stream.dmel_log_min", "expected dmel_log_min < dmel_log_max")
  if m.copy_follow and not m.text_copy:
    raise ConfigError(f"{where}.model.copy_follow", "got True, expected it only with "
                      "model.text_copy=True (it biases the copy head's pointer)")
  if config.train.freq_mask_channels > s.n_mels:
    raise ConfigError(f"{where}.train.freq_mask_channels",
                      f"got {config.train.freq_mask_channels}, expected at most "
                      f"stream.n_mels={s.n_mels}")
  if m.n_heads % m.n_kv_heads:
    raise ConfigError(f"{where}.model.n_kv_heads", f"got {m.n_kv_heads}, expected a divisor "
                      f"of model.n_heads={m.n_heads}")
  if config.train.interact_every_steps and (m.kind != "interaction" or not config.data.dir):
    raise ConfigError(f"{where}.train.interact_every_steps", "streams held-out episodes, so it "
                      "needs model.kind=interaction and a data.dir")
  if m.num_experts and m.experts_per_token > m.num_experts:
    raise ConfigError(f"{where}.model.experts_per_token", "expected <= model.num_experts")


def _get(config, dotted: str, where: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(f"{where}.{dotted}", "unknown config key")
    node = node[part]
  return node


def load(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads `get_config()` from a config file, applies `key=value` overrides, validates."""
  path = resolve(path)
  spec = importlib.util.spec_from_file_location(f"_jax_interact_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # a broken config file is user input
    raise ConfigError(str(path), f"could not be executed ({type(e).__name__}: {e})") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(str(path), "expected a function get_config()")
  config = module.get_config()
  apply_overrides(config, overrides)
  validate(config)
  return config


def from_saved(saved: dict[str, Any], where: str) -> ml_collections.ConfigDict:
  """A config saved as a dict (a workdir's config.json): keys added since it was written take
  their defaults; keys that no longer exist raise ConfigError naming them."""
  config = defaults()

  def update(node: ml_collections.ConfigDict, values: dict[str, Any], path: str) -> None:
    for key, value in values.items():
      if key not in node:
        raise ConfigError(f"{where}.{path}{key}", "unknown config key")
      if isinstance(node[key], ml_collections.ConfigDict):
        if not isinstance(value, dict):
          raise ConfigError(f"{where}.{path}{key}", f"got {value!r}, expected a section")
        update(node[key], value, f"{path}{key}.")
      else:
        node[key] = value

  update(config, saved, "")
  validate(config, where)
  return config


def resolve(path: str | pathlib.Path) -> pathlib.Path:
  """A config path as given, else the file of that name among the installed `configs/`."""
  path = pathlib.Path(path)
  if path.is_file():
    return path
  installed = pathlib.Path(__file__).resolve().parent.parent / "configs" / path.name
  if path.parent.name in ("configs", "") and installed.is_file():
    return installed
  raise ConfigError(str(path), "config file not found")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Applies overrides like `train.steps=300` (a leading `--config.` is accepted too)."""
  for item in overrides:
    text = item.removeprefix("--").removeprefix("config.")
    if "=" not in text:
      raise ConfigError(f"--config.{text}", "expected --config.key=value")
    dotted, raw = text.split("=", 1)
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ConfigError(f"config.{dotted}", "unknown config key")
      node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError(f"config.{dotted}", "unknown config key")
    node[leaf] = _parse_like(node[leaf], raw, f"config.{dotted}")


def _parse_like(current, raw: str, where: str):
  """Parses `raw` into the type of the current value."""
  if isinstance(current, bool):
    if raw.lower() in ("true", "1", "yes"):
      return True
    if raw.lower() in ("false", "0", "no"):
      return False
    raise ConfigError(where, f"got {raw!r}, expected true or false")
  if isinstance(current, str):
    return raw
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    raise ConfigError(where, f"got {raw!r}, expected a {type(current).__name__}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, (int, float, tuple, list)) and type(value) is not type(current):
    raise ConfigError(where, f"got {raw!r}, expected a {type(current).__name__}")
  return value
