"""train: fine-tune CLIP on the mixed set; the checkpoint in models/lora/, metrics in metrics/train.json."""

from varireal import classifier as clf
from varireal import datasets, io, records, training
from varireal.runtime import fix_cpu_threads, process_state
from varireal.params import load

from varireal_pipeline.stages import CHECKPOINT, METRICS, MIXED, RAW


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    p = params.train
    class_names = io.read_json(RAW / "classes.json")
    rows = records.read_mixed(MIXED / "train.csv")
    real = [r for r in rows if r.kind == "real"]
    synthetic = [r for r in rows if r.kind == "synthetic"]

    # Same params, same bits on the CPU: fixed thread count, deterministic kernels.
    fix_cpu_threads(p.threads, deterministic=True)
    classifier, preprocess_train, preprocess_eval = clf.build(
        class_names, p.model, p.pretrained, p.seed, p.finetune, p.lora,
        template=datasets.spec(params.dataset.name).template,
    )
    if p.finetune == "none":  # zero-shot: the pretrained model as is, no step taken
        history = []
    else:
        history = training.train(classifier, real, synthetic, preprocess_train if p.augment else preprocess_eval, p)
    state = process_state(p.device)  # the one training.train joined
    if not state.is_main_process:
        return

    meta = {"model": p.model, "pretrained": p.pretrained, "seed": p.seed, "finetune": p.finetune,
            "class_names": class_names}
    with io.atomic_dir(CHECKPOINT) as staging:
        clf.save(classifier, staging, meta)
    last_tenth = history[-max(1, len(history) // 10):]
    trainable = 0 if p.finetune == "none" else sum(t.numel() for t in classifier.parameters() if t.requires_grad)
    io.write_json(METRICS / "train.json", {
        "final_loss": history[-1]["loss"] if history else None,
        "mean_loss_last_10pct": round(sum(h["loss"] for h in last_tenth) / len(last_tenth), 6) if history else None,
        "steps": p.steps if history else 0,
        "real_images": len(real),
        "synthetic_images": len(synthetic),
        "trainable_parameters": trainable,
        "processes": state.num_processes,
    })
    io.write_csv(METRICS / "train_loss.csv", history, None if history else ["step", "loss", "lr"])
