"""Train from the command line, e.g. before class: `python -m mnist_core.train --epochs 5`.

Trains through the same `Trainer` as the app, so the run lands in the same models folder,
takes the same lease (one training at a time, whoever starts it) and the app shows it live.
Prints a progress bar, then one line of JSON with the result. `--stop` stops the training
that runs in the models folder, whoever started it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mnist_core.config import BOUNDS, MODELS, OPTIMIZERS, PRECISIONS, TrainConfig
from mnist_core.runs.store import ActionRefused, ModelStore
from mnist_core.training.supervisor import JobRefused, StartFailed, Trainer

BAR_WIDTH = 30
# What --drawing takes from TrainConfig.for_drawing() unless given on the command line; with
# a --model of its own, only the augmentations (the rest is that model's recipe).
DRAWING_SETTINGS = ("model", "epochs", "learning_rate", "augment", "pen_strokes")
DRAWING_AUGMENTATIONS = ("augment", "pen_strokes")
NOTEBOOK_SETTINGS = ("epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                     "precision")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def bounded(name: str, kind: type, help_text: str) -> None:
        # No default here: what is not given comes from the model's recipe (config_from_args).
        low, high = BOUNDS[name]
        default, fast = getattr(defaults, name), getattr(TrainConfig.fast_cnn(), name)
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=None,
            help=f"{help_text} ({low} to {high}; default {default}"
                 f"{f', {fast} for fast_cnn' if fast != default else ''})",
        )

    parser.add_argument("--model", choices=MODELS, default=None,
                        help=f"default {defaults.model} ({TrainConfig.for_drawing().model} with --drawing)")
    bounded("epochs", int, "passes over the training images")
    bounded("batch_size", int, "images per training step")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                        help=f"default {defaults.optimizer}")
    bounded("learning_rate", float, "peak learning rate")
    parser.add_argument("--no-lr-schedule", dest="lr_schedule", action="store_false",
                        default=None, help="constant learning rate instead of warm-up + cosine decay")
    parser.add_argument("--no-validation", dest="validation", action="store_false",
                        default=None, help="skip evaluating on x_valid after each epoch")
    bounded("train_size", int, "how many training images to use")
    bounded("seed", int, "random seed")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"default {defaults.precision}: bfloat16 where the CPU has it")
    parser.add_argument("--augment", action="store_true", default=None,
                        help="a mild random rotation, scale, slant and shift of every image "
                             "(fast_cnn's recipe has it)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="train on the images as they are")
    parser.add_argument("--pen-strokes", action="store_true", default=None,
                        help="redraw half of each batch with a pen along each digit's skeleton")
    parser.add_argument("--no-pen-strokes", dest="pen_strokes", action="store_false",
                        help="train without the pen strokes (--drawing has them)")
    parser.add_argument("--notebook", action="store_true",
                        help="the notebook's own settings: 5 epochs of batch 32, RMSprop "
                             "0.001, float32 (options given with it still win)")
    parser.add_argument("--drawing", action="store_true",
                        help="the model for drawing (Draw's 'Train the default model'): "
                             "the fast_cnn recipe with --augment and --pen-strokes")
    parser.add_argument("--choose", action="store_true",
                        help="make the new run the Draw page's model when it finishes (else a "
                             "run from the command line is used only once the teacher chooses "
                             "it on the Train page, or when no model was chosen yet)")
    parser.add_argument("--models-dir", default=None,
                        help="where to save the run (default: MNIST_MODELS_DIR or models/)")
    parser.add_argument("--stop", action="store_true",
                        help="stop the training running in the models folder, then exit")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if v is not None
             and k not in ("notebook", "drawing", "models_dir", "stop", "choose")}
    values = TrainConfig.recipe(args.model or TrainConfig().model).to_dict()
    if args.notebook:
        notebook = TrainConfig.notebook().to_dict()
        values.update({k: notebook[k] for k in NOTEBOOK_SETTINGS})
    if args.drawing:
        drawing = TrainConfig.for_drawing().to_dict()
        taken = DRAWING_AUGMENTATIONS if args.model else DRAWING_SETTINGS
        values.update({k: drawing[k] for k in taken})
    values.update({**given, "origin": "cli"})
    return TrainConfig(**values)


def progress_line(snap) -> str:
    filled = int(BAR_WIDTH * snap.progress)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    parts = [f"[{bar}] {snap.progress:4.0%}", f"epoch {snap.epoch}/{snap.config.epochs}"]
    if snap.batch_loss:
        parts.append(f"loss {snap.batch_loss[-1]:.4f} acc {snap.batch_accuracy[-1]:.4f}")
    if snap.samples_per_second:
        parts.append(f"{snap.samples_per_second:,.0f} samples/s")
    if snap.eta is not None:
        parts.append(f"ETA {snap.eta:.0f} s")
    if snap.state == "starting":
        parts.append("starting TensorFlow...")
    return "  ".join(parts)


def follow(trainer: Trainer) -> None:
    """Print progress until the training ends; Ctrl-C asks it to stop after the batch."""
    interactive = sys.stderr.isatty()
    printed = 0
    try:
        while True:
            snap = trainer.snapshot()
            if interactive:
                print("\r" + progress_line(snap), end="", file=sys.stderr, flush=True)
            for event in snap.history[printed:]:
                if interactive:
                    print(file=sys.stderr)
                print(epoch_line(event), file=sys.stderr, flush=True)
                printed += 1
            if not snap.active:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nstopping after the current batch...", file=sys.stderr)
        trainer.stop()
        trainer.wait()
    if interactive:
        print(file=sys.stderr)


def epoch_line(event) -> str:
    values = [f"{name} {getattr(event, name):.4f}"
              for name in ("loss", "accuracy", "val_loss", "val_accuracy")
              if getattr(event, name) is not None]  # a metrics line may leave any out
    return f"epoch {event.epoch + 1}: " + "  ".join(values) + f"  ({event.seconds:.1f} s)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    trainer = Trainer(args.models_dir)
    if args.stop:
        stopped = trainer.stop()
        print("asked the training to stop" if stopped else "no training is running",
              file=sys.stderr)
        return 0 if stopped else 1
    try:
        config = config_from_args(args)
        started = trainer.start(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (JobRefused, StartFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if started.notice:
        print(started.notice, file=sys.stderr)
    follow(trainer)
    snap = trainer.wait()
    store = ModelStore(trainer.root)
    run = store.get(started.run_id)
    record = run.record if run else None
    if args.choose and record is not None:
        try:
            store.choose(run.run_id)
        except ActionRefused as exc:
            print(f"not chosen for the Draw page: {exc}", file=sys.stderr)
    current = store.current()
    summary = {
        "run_id": started.run_id,
        "status": snap.state,
        "model": config.model,
        "epochs": record.epochs_completed if record else 0,
        "batch_size": config.batch_size,
        "val_accuracy": snap.val_accuracy,
        "fit_seconds": round(record.fit_seconds, 2) if record else None,
        "device": snap.device,
        "device_kind": snap.device_kind,
        "precision": snap.precision,
        "saved": str(run.keras_path) if record else None,
        "draw_model": current is not None and current.run_id == started.run_id,
    }
    if snap.error:
        print(snap.error, file=sys.stderr)
    print(json.dumps(summary))
    return 0 if snap.state in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
