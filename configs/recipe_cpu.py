"""recipe_cpu: the six graded task families on 2 CPU cores (SPEC §9, issue 10).

The recipe for a machine without an accelerator. Its model (out/h16, 2026-12-06; about 77 min on 2
cores with generation and three evaluations) met all 8 targets of issue 10 with every quiet
interval kept on its own 360 validation episodes and on 480 episodes each of seeds 19, 20 and 21,
never trained on. Against the turn-based cascade (out/tb0, 2026-12-07) it beats both baselines on
all six families of its own split and on 5, 5 and 4 of seeds 19-21. That is training seed 0
(`seed`): from seed 1 it missed rep_count on all four sets (out/h16s1). Each number beside both
baselines: README, "Learning the tasks: the recipe"; docs/BENCHMARKS.md, "A fifth fresh seed,
and sixteen attention heads" and "A second training seed of the adopted recipe".

It is configs/demo.py (compact micro-turn, the model's own audio fed back as voicing, `<sil>` 0.3)
with the two background slots per micro-turn that a delegate's results arrive in (the demo has
none), and without the demo's feedback noise, own-prediction feedback and voicing threshold (on the
six families they traded pause_handling and rep_count for turn_taking: ablation r6). Sixteen
attention heads of 8 (two of 64 before eight of 16: the user transcript's teacher-forced word
accuracy after 800 steps 0.16 -> 0.52, ablation a1-a9; eight to sixteen: 0.31 -> 0.39, out/hd, and
delegate and rep_count rose on all four sets, for 1.27x the training time); training and attention
windows of 32 micro-turns (6.4 s), long enough to see a beat period or a calculator result arrive
after its question. A tokenizer of 2048 pieces, so that every number and word is one piece
(delegate's results were cut short at a piece boundary). 3600 episodes (with 1200 it memorised
them: training text accuracy 0.93 against 0.58 held out) for 9000 steps (after 5000 it met 3
targets; the longer run cut pause false takeovers from 0.26 to 0.09). Its text slots may copy the
bg tokens they see (`model.text_copy`, models/copy_head.py): without that path the calculator's
answer was not learned (delegate results correct 0.017 after 2000 delegate-only steps; with it
0.983). An epoch draws 2-5 windows from each episode, most from the families that need the most
(`data.task_repeats`; the 2048-piece tokenizer needs more pause and barge-in windows than the
512-piece one, and fewer of delegate), half the windows of a time_speak or delegate episode start
at its first micro-turn, where the request is (`data.first_window_share`,
`data.first_window_tasks`: time_speak 0.48 -> 0.71 on seed 13). A text slot starts to speak once
P(`<sil>`) falls below 0.3 rather than 0.5 (0.35 with eight heads: pause false takeovers 0.14 ->
0.09; with sixteen, 0.3 rather than 0.35 cut them from 0.09-0.10 to 0.07-0.08, on the same weights)
and, once speaking, goes on until it reaches 0.5 (`sample.continue_threshold`'s default: the last
piece of a number is said). It keeps a moving average of its parameters (`train.ema_decay` 0.999,
about the last 1000 steps), and `make recipe` scores the average at the last step (time_speak 0.59
-> 0.81). The streaming eval on 36 validation episodes every 500 steps logs each family's score and
keeps its best step in W/best, which scored lower on 120 held-out episodes than the last.

  make recipe        # generate, train, evaluate: the three commands below
  jax-interact data generate --out out/recipe/data --episodes 3600 --seed 1 --vocab-size 2048 \
      --tasks turn_taking,pause_handling,interruption,rep_count,time_speak,delegate
  jax-interact train --config configs/recipe_cpu.py --workdir out/recipe/train \
      --config.data.dir=out/recipe/data
  jax-interact eval --workdir out/recipe/train --checkpoint latest --data out/recipe/data \
      --out out/recipe/eval --max-episodes 480
"""

from configs import demo


def get_config():
  c = demo.get_config()
  c.name = "recipe_cpu"
  c.stream.bg_slots = 2
  c.data.window = 32
  c.model.window_turns = 32
  c.model.text_copy = True
  c.model.n_heads = 16
  c.model.n_kv_heads = 8
  c.model.head_dim = 8
  c.model.vocab_size = 2048
  c.data.task_repeats = ("turn_taking:2,interruption:3,pause_handling:4,rep_count:3,"
                         "time_speak:5,delegate:4")
  c.data.first_window_share = 0.5
  c.data.first_window_tasks = "time_speak,delegate"
  c.train.steps = 9000
  c.train.warmup_steps = 30  # as tiny; run r5 trained with it
  c.train.ema_decay = 0.999
  c.train.feedback_noise = 0.0
  c.train.own_feedback = 0.0
  c.loss.user_speech_scale = 1.0  # at the demo's 1.5: one bar lost, on seed 19 (out/usf_r)
  c.sample.voicing_threshold = 0.5
  c.sample.silence_threshold = 0.3
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 500
  c.train.eval_batches = 4
  c.train.interact_every_steps = 500
  c.train.interact_episodes = 36
  c.checkpoint.every_steps = 500
  return c
