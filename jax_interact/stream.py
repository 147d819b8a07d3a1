"""`jax-interact stream`: one streaming session over a recorded episode or audio/video files.

Writes, into OUT: `out.wav` (the model's voice, vocoded per micro-turn and placed on the wall
clock: the output of micro-turn t plays during [(t+1)T, (t+2)T); it has exactly the input's
sample rate and number of samples, what Full-Duplex-Bench expects), `transcript.json` (every
generated token with its micro-turn, wall time, slot kind and text), `timeline.png` (input and
output audio with both transcripts on one time axis) and `latency.json` (step-time percentiles
and the real-time factor). Everything is written to a temporary folder renamed at the end.
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jax_interact import atomic, vocoder  # noqa: E402
from jax_interact.errors import InputError  # noqa: E402
from jax_interact.inference import engine as engine_lib  # noqa: E402
from jax_interact.inference import session, trained as trained_lib  # noqa: E402
from jax_interact.inference.chunks import episode_chunks, file_chunks  # noqa: E402
from jax_interact.streams import audio as audio_lib, dmel, timing  # noqa: E402
from jax_interact.streams.layout import Layout, SlotKind  # noqa: E402
from jax_interact.streams.timing import SAMPLE_RATE  # noqa: E402
from jax_interact.streams.tokenizer import SIL, SPECIAL_PIECES, Tokenizer  # noqa: E402


def transcript(outputs: list[engine_lib.TurnOutput], layout: Layout,
               tokenizer: Tokenizer) -> list[dict]:
  """Every generated text token other than `<sil>`/`<pad>`, in generation order."""
  rows = []
  for out in outputs:
    start_s, _ = timing.output_window_s(out.turn, layout.chunk_ms)
    for kind, ids in ((SlotKind.USER_TRANSCRIPT, out.user_transcript),
                      (SlotKind.TEXT_OUT, out.text_out)):
      for slot, token in enumerate(int(i) for i in ids):
        if token == SIL or token == 0:
          continue
        special = token < len(SPECIAL_PIECES)
        rows.append({"micro_turn": out.turn, "wall_time_s": round(start_s, 3),
                     "slot_kind": kind.name.lower(), "slot": slot, "id": token,
                     "text": SPECIAL_PIECES[token] if special else tokenizer.piece(token),
                     "missing_input": out.missing_input})
  return rows


def model_voice(outputs: list[engine_lib.TurnOutput], spec: dmel.DMelSpec,
                layout: Layout) -> np.ndarray:
  """float32 waveform of the model's audio slots, placed on the wall clock."""
  state = vocoder.init_stream(spec)
  pieces = [np.zeros(layout.chunk_samples, np.float32)]  # nothing is said during [0, T)
  for out in outputs:
    log_mel_FM = dmel.dequantize(out.audio_out.reshape(-1, spec.n_mels), spec)
    state, samples = vocoder.vocode_chunk(state, jnp.asarray(log_mel_FM), spec)
    pieces.append(np.asarray(samples))
  pieces.append(np.asarray(vocoder.flush(state)))
  wave = np.concatenate(pieces)
  return np.clip(wave, -1.0, 1.0)


def on_input_clock(voice_16k: np.ndarray, n_samples: int, rate: int) -> np.ndarray:
  """The model's voice at the input's `rate`, cut or padded with silence to `n_samples`: sample
  i of the output and of the input are the same instant."""
  voice = audio_lib.resample(voice_16k, SAMPLE_RATE, rate)
  return np.pad(voice[:n_samples], (0, max(0, n_samples - len(voice))))


def draw_timeline(user: np.ndarray, voice: np.ndarray, tokens: list[dict],
                  chunk_ms: int) -> plt.Figure:
  rate = SAMPLE_RATE
  duration = max(len(user), len(voice)) / rate
  fig, axes = plt.subplots(2, 1, figsize=(max(8.0, duration * 1.2), 4.5), sharex=True)
  for ax, wave, label, colour, kind in ((axes[0], user, "user (input)", "tab:blue",
                                         "user_transcript"),
                                        (axes[1], voice, "model (output)", "tab:orange",
                                         "text_out")):
    ax.plot(np.arange(len(wave)) / rate, wave, color=colour, linewidth=0.4)
    ax.set_ylabel(label)
    ax.set_ylim(-1.05, 1.05)
    for i, token in enumerate(t for t in tokens if t["slot_kind"] == kind):
      ax.text(token["wall_time_s"], 0.85 - 0.2 * (i % 4), token["text"], fontsize=7,
              color="black")
    for t in np.arange(0, duration, chunk_ms / 1000):
      ax.axvline(t, color="0.9", linewidth=0.4, zorder=0)
  axes[1].set_xlabel("wall time (s)")
  axes[0].set_title("stream: user transcript tokens above, model text below")
  fig.tight_layout()
  return fig


def main(args) -> int:
  run = trained_lib.load(args.workdir, args.checkpoint, args.overrides)
  layout = run.model.layout
  if args.episode:
    from data_pipelines.dataset import episode_by_index
    data_dir, _, index = args.episode.rpartition(":")
    if not data_dir or not index.isdigit():
      raise InputError("--episode", f"got {args.episode!r}, expected DIR:K")
    episode = episode_by_index(data_dir, int(index))
    chunks = episode_chunks(episode, layout, run.tokenizer)
    user = audio_lib.from_int16(episode.user_audio)
    rate, n_samples = SAMPLE_RATE, len(user)
  else:
    samples_CS, rate = audio_lib.load_audio(args.audio)
    chunks = file_chunks(samples_CS, rate, args.video, layout)
    user = np.concatenate([c.audio for c in chunks])
    n_samples = samples_CS.shape[-1]

  engine = engine_lib.Engine(session.program(run.model, run.config), batch_size=1,
                             seed=args.seed)
  runner = engine
  if getattr(args, "background", None):
    from jax_interact.background import orchestrator
    worker = orchestrator.open_worker(args.background, run.tokenizer, run.config.background)
    runner = orchestrator.Orchestrator(engine, worker, run.tokenizer,
                                       timeout_s=run.config.background.timeout_s)
  row = runner.add("stream")
  try:
    history = engine_lib.run(runner, {row: chunks}, realtime=args.realtime)
  finally:
    if runner is not engine:
      runner.close()
  background_events = runner.events(row) if runner is not engine else []
  outputs = [turn[row] for turn in history]
  latency = engine_lib.latency_summary([o.step_ms for o in outputs[1:]] or [outputs[0].step_ms],
                                       layout.chunk_ms)
  tokens = transcript(outputs, layout, run.tokenizer)
  voice = model_voice(outputs, dmel.DMelSpec.from_config(run.config.stream), layout)

  out = pathlib.Path(args.out)
  with atomic.directory(out) as tmp:
    audio_lib.write_audio(tmp / "out.wav", on_input_clock(voice, n_samples, rate), rate)
    (tmp / "transcript.json").write_text(json.dumps(
        {"chunk_ms": layout.chunk_ms, "checkpoint_step": run.step, "tokens": tokens,
         "background": background_events}, indent=1))
    (tmp / "latency.json").write_text(json.dumps(latency, indent=2))
    fig = draw_timeline(user, voice, tokens, layout.chunk_ms)
    fig.savefig(tmp / "timeline.png", dpi=110)
    plt.close(fig)
  spoken = " ".join(t["text"] for t in tokens if t["slot_kind"] == "text_out")
  print(f"{len(outputs)} micro-turns, p50 step {latency['p50_step_ms']:.1f} ms "
        f"(rtf {latency['rtf']:.3f}); model said: {spoken[:200]!r}\nwrote {out}")
  return 0
