"""train: fine-tune CLIP on the mixed set; the checkpoint in models/lora/, metrics in metrics/train.json."""

from varireal import augment, datasets, io, records, training
from varireal import classifier as clf
from varireal.errors import StageError
from varireal.runtime import fix_cpu_threads, process_state
from varireal.params import load

from varireal_pipeline.stages import CHECKPOINT, METRICS, MIXED, RAW, SYNTHETIC, clip_weights

VAL_SPLIT = RAW / "val.csv"  # a validation split the fetch stage wrote (e.g. CoOp's), used when present


def validation_rows(params) -> list[records.SplitRow]:
    """The held-out real images: the fetch stage's validation split when it wrote one (held out before any
    edit), else train.val_fraction of the real training split (training.validation_split); [] for none."""
    if VAL_SPLIT.exists():
        return records.read_split(VAL_SPLIT)
    if params.train.val_fraction == 0:
        return []
    train_split = records.read_split(RAW / "train.csv")
    return training.validation_split(train_split, params.train.val_fraction, params.train.seed)


def main(params_path="params.yaml") -> None:
    params = load(params_path)
    p = params.train
    pretrained = clip_weights(p.pretrained)
    class_names = io.read_json(RAW / "classes.json")
    rows = records.read_mixed(MIXED / "train.csv")
    real = [r for r in rows if r.kind == "real"]
    synthetic = [r for r in rows if r.kind == "synthetic"]
    held_out = validation_rows(params)
    if p.select == "best-val" and not held_out:
        raise StageError("train.select best-val needs a validation split: set train.val_fraction above 0 "
                         f"(or let fetch write {VAL_SPLIT})")
    if held_out:  # neither the held-out photos nor their edits are trained on
        held = {r.path for r in held_out}
        manifest = SYNTHETIC / "manifest.csv"
        edited_from = {m.path: m.source for m in records.read_manifest(manifest)} if manifest.exists() else {}
        real = [r for r in real if r.path not in held]
        synthetic = [r for r in synthetic if edited_from.get(r.path) not in held]
        if not real and not synthetic:
            raise StageError("train.val_fraction holds out every training image; lower it")

    # Same params, same bits on the CPU: fixed thread count, deterministic kernels.
    fix_cpu_threads(p.threads, deterministic=True)
    classifier, preprocess_train, preprocess_eval = clf.build(
        class_names, p.model, pretrained, p.seed, p.finetune, p.lora,
        template=datasets.template(params.dataset.name, p.template), head=p.head,
    )
    validation = training.Validation(held_out, preprocess_eval, p.val_every) if held_out else None
    if p.finetune == "none":  # zero-shot: the pretrained model as is, no step taken
        history = []
    else:
        transform = augment.build(p.augment, preprocess_train, preprocess_eval)
        history = training.train(classifier, real, synthetic, transform, p, validation)
    state = process_state(p.device)  # the one training.train joined
    if not state.is_main_process:
        return

    meta = {"model": p.model, "pretrained": pretrained, "seed": p.seed, "finetune": p.finetune,
            "class_names": class_names}
    with io.atomic_dir(CHECKPOINT) as staging:
        clf.save(classifier, staging, meta)
    last_tenth = history[-max(1, len(history) // 10):]
    trainable = 0 if p.finetune == "none" else sum(t.numel() for t in classifier.parameters() if t.requires_grad)
    summary = {
        "final_loss": history[-1]["loss"] if history else None,
        "mean_loss_last_10pct": round(sum(h["loss"] for h in last_tenth) / len(last_tenth), 6) if history else None,
        "steps": len(history),
        "real_images": len(real),
        "synthetic_images": len(synthetic),
        "trainable_parameters": trainable,
        "processes": state.num_processes,
    }
    if validation is not None and history:  # only then: the default's metrics keep their keys
        best = validation.best
        summary.update({"val_images": len(held_out), "val_top1_final": validation.results[-1]["val_top1"],
                        "val_top1_best": best["val_top1"], "val_best_step": best["step"],
                        "checkpoint_step": best["step"] if p.select == "best-val" else len(history)})
        # The validation top-1 beside the loss, at the steps it was judged (empty elsewhere): the declared plot.
        judged = {result["step"]: result["val_top1"] for result in validation.results}
        history = [{**row, "val_top1": judged.get(row["step"], "")} for row in history]
    io.write_json(METRICS / "train.json", summary)
    io.write_csv(METRICS / "train_loss.csv", history, None if history else ["step", "loss", "lr"])
