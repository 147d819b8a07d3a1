"""recipe_cpu: the six graded task families on 2 CPU cores (SPEC §9, issue 10).

The recipe for a machine without an accelerator (docs/BENCHMARKS.md has what it reached: all 8
targets, the user transcript's WER included, on its own validation episodes and on seed 13, and 7 on
seed 12 (delegate 0.75 of 0.8), seeds it never trained on, in about an hour; over four held-out
seeds, 80 episodes a family, delegate 0.76 ± 0.05 is the one target it misses; quiet intervals
kept in every family but time_speak on seed 13, 2 of 19). It is configs/demo.py (compact micro-turn, the
model's own audio fed back as voicing, `<sil>` 0.3) with the two background slots per micro-turn
that a delegate's results arrive in (the demo has none), and without the demo's feedback noise,
own-prediction feedback and voicing threshold (on the six families they traded pause_handling and
rep_count for turn_taking: ablation r6), with its eight attention heads of 16 (two of 64 before: the
user transcript's teacher-forced word accuracy after 800 steps 0.16 -> 0.52, ablation a1-a9), and
training and attention windows of 32 micro-turns (6.4 s), long enough to see a beat period or a
calculator result arrive after its question. It trains on 3600 episodes (with 1200 it memorised
them: training text accuracy 0.93 against 0.58 held out; with 3600 the held-out text loss fell from
0.36 to 0.20 and the user transcript's WER from 0.32-0.38 to 0.21-0.22) for 9000 steps (after 5000
it met 3 targets; the longer run cut pause false takeovers from 0.26 to 0.09 and rep_count's quiet
violations from 0.30 to 0.10). Its text slots may copy the bg tokens they see (`model.text_copy`,
models/copy_head.py): without that path the calculator's answer was not learned (delegate results
correct 0.017 after 2000 delegate-only steps; with it 0.983). An epoch draws 2-5 windows from each
episode, most from the families that need the most (`data.task_repeats`: delegate 0.50 -> 0.70,
time_speak 0.57 -> 0.61 on its validation episodes), half the windows of a time_speak or delegate
episode start at its first micro-turn, where the request is (`data.first_window_share`,
`data.first_window_tasks`: time_speak 0.48 -> 0.71 and the mean score 0.756 -> 0.873 on seed 13),
and a text slot starts to speak once P(`<sil>`) falls below 0.35 rather than 0.5 (pause false
takeovers 0.14 -> 0.09, on the same weights) and, once speaking, goes on until it reaches 0.5
(`sample.continue_threshold`'s default: the last piece of a number split in two is said, delegate
0.75 -> 0.85 on seed 13). It keeps a moving average of its parameters (`train.ema_decay` 0.999,
about the last 1000 steps), and `make recipe` scores the average at the last step: with it the
recipe met all 8 targets on 120 episodes of seed 12 and 6 on its own validation episodes (time_speak
0.59 -> 0.81; turn_taking takeover 0.97 -> 0.87 and delegate 0.70 -> 0.60 there). The streaming eval
on 36 validation episodes every 500 steps logs each family's score and keeps its best step in
W/best, which scored lower on 120 episodes than the last (6500: 3 and 6 targets).

  make recipe        # generate, train, evaluate: the three commands below
  jax-interact data generate --out out/recipe/data --episodes 3600 --seed 1 \
      --tasks turn_taking,pause_handling,interruption,rep_count,time_speak,delegate
  jax-interact train --config configs/recipe_cpu.py --workdir out/recipe/train \
      --config.data.dir=out/recipe/data
  jax-interact eval --workdir out/recipe/train --checkpoint latest --data out/recipe/data \
      --out out/recipe/eval --max-episodes 120
"""

from configs import demo


def get_config():
  c = demo.get_config()
  c.name = "recipe_cpu"
  c.stream.bg_slots = 2
  c.data.window = 32
  c.model.window_turns = 32
  c.model.text_copy = True
  c.data.task_repeats = ("turn_taking:2,interruption:2,pause_handling:3,rep_count:3,"
                         "time_speak:4,delegate:5")
  c.data.first_window_share = 0.5
  c.data.first_window_tasks = "time_speak,delegate"
  c.train.steps = 9000
  c.train.warmup_steps = 30  # as tiny; run r5 trained with it
  c.train.ema_decay = 0.999
  c.train.feedback_noise = 0.0
  c.train.own_feedback = 0.0
  c.sample.voicing_threshold = 0.5
  c.sample.silence_threshold = 0.35
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 500
  c.train.eval_batches = 4
  c.train.interact_every_steps = 500
  c.train.interact_episodes = 36
  c.checkpoint.every_steps = 500
  return c
