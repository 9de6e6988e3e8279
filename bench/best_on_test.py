"""How much picking the best checkpoint on the test set inflates top-1 (the official code's choice).

On the embedded world (real images only, the default training params otherwise), each seed trains once and
is judged on the test split every --every steps; the "best-on-test" top-1 is the largest of those, the
"final" top-1 the last one. Their gap is optimistic selection bias: the max over checkpoints of a noisy
estimate is biased upwards, and the test set has then been used to choose, so it no longer measures.

    python bench/best_on_test.py --seeds 0 1 2 --every 15 --test-per-class 60 [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from varireal import classifier as clf
from varireal import datasets, records, training
from varireal.params import validate
from varireal.runtime import fix_cpu_threads

from common import machine  # noqa: E402  (bench scripts run as files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--every", type=int, default=15)
    parser.add_argument("--test-per-class", type=int, default=60)
    parser.add_argument("--steps", type=int, default=None, help="train.steps; default: params.yaml's")
    args = parser.parse_args()

    params = validate({"dataset": {"test_per_class": args.test_per_class}}, "bench")
    fix_cpu_threads(params.train.threads, deterministic=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        datasets.get(params.dataset).write(out, out, params.dataset.shots, params.seed)
        names = json.loads((out / "classes.json").read_text())
        train_rows, test_rows = records.read_split(out / "train.csv"), records.read_split(out / "test.csv")
        for seed in args.seeds:
            p = params.train.model_copy(update={"seed": seed, "select": "best-val", "val_every": args.every,
                                                "steps": args.steps or params.train.steps})
            model, preprocess_train, preprocess_eval = clf.build(names, p.model, p.pretrained, seed, p.finetune,
                                                                 p.lora, template=datasets.template("world"))
            on_test = training.Validation(test_rows, preprocess_eval, args.every)  # the official (wrong) use
            training.train(model, train_rows, [], preprocess_train, p, on_test)
            final, best = on_test.results[-1]["val_top1"], on_test.best
            rows.append({"seed": seed, "final": final, "best_on_test": best["val_top1"], "best_step": best["step"]})
            print(json.dumps(rows[-1]), flush=True)
    gaps = [r["best_on_test"] - r["final"] for r in rows]
    print(machine())
    print(f"world, real only, {len(test_rows)} test images, judged every {args.every} of {p.steps} steps: "
          f"best-on-test minus final top-1 = {100 * sum(gaps) / len(gaps):.2f} points on average "
          f"(per seed: {', '.join(f'{100 * g:.2f}' for g in gaps)})")


if __name__ == "__main__":
    main()
