"""demo: the model of `make demo`, which learns some turn-taking in minutes on 2 CPU cores.

`tiny` with a smaller micro-turn (10 mel frames per audio token, 40x40 video, fewer text slots)
and eight attention heads of 16 (with two, the user transcript barely learns: ablation a1-a9),
and with the settings the ablations of docs/BENCHMARKS.md picked: the model's own audio fed back
as its voicing only (its sampled mel carries no information its voicing decision lacks, and
drifts), `<sil>` targets weighted 0.3, and a fifth of the fed-back words replaced by random ones
in training (`train.feedback_noise`; it made the model stop after every barge-in, trial t3), and
a third of the fed-back text and voicing replaced by the model's own decisions
(`train.own_feedback`, parallel scheduled sampling, decided as streaming decides them), streamed
with a voicing threshold of 0.9: together they make it fall silent after its answers (trial t5;
at the default threshold of 0.5, or 0.7, its own voice keeps it talking, "and and and").
Its own silence weighs 1.5 times more in the micro-turns heard while the user says a word
(`loss.user_speech_scale`): with it turn_taking reaches 0.98 on seeds 1 and 12, and its streamed
episode answers both of its questions (out/usf).
It sees 32 micro-turns (6.4 s) of context, as recipe_cpu does, where tiny sees 16: that lifted
the user transcript (WER 0.64 -> 0.31) and with it pause handling; and it has no background
slots, which its three families never fill (a tenth off the step). `jax-interact demo` runs it
for 2000 steps on 900 episodes of three families whose timing it learns first (turn_taking,
pause_handling, interruption) and scores it on 135 episodes of another seed: it beats the
silent and the turn-based baseline on two (on seed 1 on 2026-12-08: interruption, and
turn_taking on latency; it loses pause_handling, 0.600 against 0.646; on seed 12 it beats both
on all three; README.md; docs/BENCHMARKS.md, "The silence weight read background noise as
speech"). About 10 minutes of
training on 2 CPU cores:

  jax-interact data generate --out out/demo/data --episodes 900 --seed 0 \
      --tasks turn_taking,pause_handling,interruption
  jax-interact train --config configs/demo.py --workdir out/demo/train \
      --config.data.dir=out/demo/data
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.name = "demo"
  c.stream.frames_per_token = 10
  c.stream.video_height = 40
  c.stream.video_width = 40
  c.stream.user_transcript_slots = 2
  c.stream.text_out_slots = 3
  c.stream.bg_slots = 0
  c.data.window = 32
  c.model.window_turns = 32
  c.model.n_heads = 8
  c.model.n_kv_heads = 4
  c.model.head_dim = 16
  c.model.audio_feedback = "voicing"
  c.loss.silence_weight = 0.3
  c.loss.user_speech_scale = 1.5
  c.train.feedback_noise = 0.2
  c.train.own_feedback = 0.3
  c.sample.voicing_threshold = 0.9
  c.train.steps = 2000
  c.train.warmup_steps = 100
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.checkpoint.every_steps = 500
  return c
