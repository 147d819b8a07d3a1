"""`jax-interact eval --workdir W --data DIR --out OUT`: the interactivity report of a trained run.

Scores the first `--max-episodes` episodes of the held-out split (evaluation/evaluator.py,
`--batch` sessions streamed at a time) and writes OUT/report.json, OUT/report.md and the plots
(evaluation/report.py). Episodes of tasks without a scorer (e.g. converted real conversations)
are counted in the report's meta and skipped.
"""

from __future__ import annotations

import pathlib

from data_pipelines.held_out import DatasetSplit
from jax_interact.evaluation import baselines, report, scoring
from jax_interact.evaluation.evaluator import Evaluator
from jax_interact.inference import trained as trained_lib


def main(args) -> int:
  out = pathlib.Path(args.out)
  report.check_writable(out)
  held_out = DatasetSplit(args.data, args.split, args.max_episodes, scoring.SCORERS)
  run = trained_lib.load(args.workdir, args.checkpoint, args.overrides)
  evaluator = Evaluator(run.model, run.config, run.tokenizer, held_out, batch_size=args.batch)
  evaluation = evaluator.run()
  result = evaluation.report
  result["meta"] = {"workdir": str(args.workdir), "checkpoint": args.checkpoint,
                    "checkpoint_step": run.step, **result["meta"]}
  report.write(evaluation, out)
  families = [k for k in result if k not in ("overall", "baselines", "meta")]
  width = max(len(f) for f in families + ["overall"])
  print(f"{'family':<{width}}  {'model':>6} {'silent':>6} {'turn_based':>10}")
  for family in families + ["overall"]:
    values = [result[family].get("score")] + [result["baselines"][s].get(family, {}).get("score")
                                              for s in baselines.BASELINES]
    print(f"{family:<{width}}  " + " ".join(f"{'–' if v is None else f'{v:.3f}':>{w}}"
                                             for v, w in zip(values, (6, 6, 10))))
  print(f"wrote {out}/report.json and report.md")
  return 0
