"""recipe_cpu: learns the five graded task families on 2 CPU cores in under 2 hours.

The recipe of SPEC §9 for a machine without an accelerator (docs/BENCHMARKS.md has what it
reached). It differs from `tiny` where the tasks need it: the training window and the attention
window hold 32 micro-turns (6.4 s), long enough to see a reminder period or a calculator result
arrive after its question, and it trains long enough to learn timing, not only words.

  make recipe        # generate, train, evaluate: the three commands below
  jax-interact data generate --out out/recipe/data --episodes 1200 --seed 1 \
      --tasks turn_taking,interruption,rep_count,time_speak,delegate
  jax-interact train --config configs/recipe_cpu.py --workdir out/recipe/train \
      --config.data.dir=out/recipe/data
  jax-interact eval --workdir out/recipe/train --data out/recipe/data \
      --out out/recipe/eval --max-episodes 120
"""

from configs import tiny


def get_config():
  c = tiny.get_config()
  c.name = "recipe_cpu"
  c.data.window = 32
  c.model.window_turns = 32
  c.train.steps = 3200
  c.train.warmup_steps = 200
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.train.eval_batches = 4
  c.checkpoint.every_steps = 500
  return c
