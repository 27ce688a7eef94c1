"""Training settings: one dataclass whose bounds the CLI, the worker and the UI all share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

MODELS = ("seed_mlp", "cnn", "fast_cnn")
MODEL_NAMES = {"seed_mlp": "Seed MLP", "cnn": "CNN", "fast_cnn": "Fast CNN"}
MODEL_LABELS = {  # the Train page's choices: each name with what it is
    "seed_mlp": f"{MODEL_NAMES['seed_mlp']} (the notebook's network)",
    "cnn": f"{MODEL_NAMES['cnn']} (Keras MNIST convnet)",
    "fast_cnn": f"{MODEL_NAMES['fast_cnn']} (batch norm: ~99.3% in 4 epochs)",
}
OPTIMIZERS = ("adam", "rmsprop", "sgd")
# "auto": bfloat16 mixed precision on CPUs with native bfloat16 (about 1.5x faster here),
# float32 elsewhere. Models are always saved and served in float32.
PRECISIONS = ("auto", "float32", "mixed_bfloat16")
# Who started a run. It decides whether the run becomes the Draw model by itself when it
# finishes (the Train page's live demo, Draw's "Train the default model") or only when the
# teacher chooses it (the CLI, a fine-tune): see mnist_core.runs.store.
ORIGINS = ("train_page", "draw_page", "cli", "fine_tune")

FAST_CNN_LEARNING_RATE = 0.005
FAST_CNN_EPOCHS = 4
CNN_LEARNING_RATE = 0.002  # the keras-io CNN, without batch norm: 0.003 was never measured
CNN_EPOCHS = 5

# field -> (min, max); the UI's widgets use exactly these.
BOUNDS = {
    "epochs": (1, 50),
    "batch_size": (16, 4096),
    "learning_rate": (1e-5, 1.0),
    "train_size": (1000, 60000),
    "seed": (0, 2**31 - 1),
}


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how. Defaults: the notebook's network, tuned to be fast.

    The notebook itself fits 5 epochs of batch 32 with the default RMSprop (lr 0.001);
    batch 512 with Adam and a warm-up + cosine learning-rate schedule reaches the same ~98%
    (98.2%) in 4 epochs, in a fifth of the time or less, because large batches keep both CPU
    cores busy on big matrix products instead of on per-step overhead
    (benchmarks/RESULTS.md, "Training: the notebook's fit against the app's default").
    """

    model: str = "seed_mlp"
    epochs: int = 4
    batch_size: int = 512
    optimizer: str = "adam"
    learning_rate: float = 0.003
    lr_schedule: bool = True  # warm-up then cosine decay to 0 over the whole run
    validation: bool = True  # evaluate on (x_valid, y_valid) after every epoch
    train_size: int = 60000  # how many of x_train to train on (a random subset when smaller)
    seed: int = 0
    precision: str = "auto"
    augment: bool = False  # a mild random rotation, scale, squeeze, slant and shift per image
    pen_strokes: bool = False  # half of each batch redrawn with a pen along the digit's skeleton
    fine_tune_from: str | None = None  # a run id: start from its weights, add the class's drawings
    # One of ORIGINS. A config.json written before origins existed reads as "cli"; a config
    # with fine_tune_from is always a "fine_tune", whoever started it.
    origin: str = "cli"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            kind = float if name == "learning_rate" else int
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number from {low} to {high}, got {value!r}")
            if kind is int and value != int(value):
                raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be from {low} to {high}, got {value}")
            object.__setattr__(self, name, kind(value))
        if self.fine_tune_from is not None and (
                not self.fine_tune_from or "/" in self.fine_tune_from
                or self.fine_tune_from.startswith(".")):
            raise ValueError(f"fine_tune_from must be a run id, got {self.fine_tune_from!r}")
        for name in ("lr_schedule", "validation", "augment", "pen_strokes"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {self.origin!r}")
        if self.fine_tune_from is not None:
            object.__setattr__(self, "origin", "fine_tune")
        elif self.origin == "fine_tune":
            raise ValueError("origin fine_tune needs fine_tune_from (the run it starts from)")

    @classmethod
    def notebook(cls, origin: str = "cli") -> TrainConfig:
        """The notebook's own settings: 5 epochs of batch 32 (Keras default), RMSprop at 0.001,
        no schedule."""
        return cls(
            epochs=5, batch_size=32, optimizer="rmsprop", learning_rate=0.001, lr_schedule=False,
            precision="float32", origin=origin,
        )

    @classmethod
    def fast_cnn(cls, origin: str = "cli") -> TrainConfig:
        """The fast CNN's recipe, the Train page's CNN for a live demo: the app's training
        (batch 512, Adam, warm-up + cosine) for 4 epochs at a peak learning rate of 0.005,
        which its batch normalisation keeps stable, with the mild affine augmentation.
        Measured in benchmarks/RESULTS.md ("A CNN in 20 seconds"): 99.30% mean of 3 seeds
        in 15-20 s of float32 fit on 2 cores."""
        return cls(model="fast_cnn", epochs=FAST_CNN_EPOCHS,
                   learning_rate=FAST_CNN_LEARNING_RATE, augment=True,
                   origin=origin)

    @classmethod
    def recipe(cls, model: str, origin: str = "cli") -> TrainConfig:
        """The settings a model trains best with here: the fast CNN's own; the keras-io CNN's
        as measured in benchmarks/RESULTS.md ("The CNN": 5 epochs at a peak of 0.002, or 15
        of batch 128 for 99.3%); the defaults for the notebook's MLP."""
        if model == "fast_cnn":
            return cls.fast_cnn(origin)
        if model == "cnn":
            return cls(model=model, epochs=CNN_EPOCHS, learning_rate=CNN_LEARNING_RATE,
                       origin=origin)
        return cls(model=model, origin=origin)

    @classmethod
    def for_drawing(cls, origin: str = "cli") -> TrainConfig:
        """The model for drawing (Draw's "Train the default model"): the fast CNN's recipe on
        digits that vary as drawings do (mildly turned, scaled, slanted and shifted, half of
        each batch redrawn with a pen). Measured in benchmarks/RESULTS.md ("A CNN in 20
        seconds"): 98.0% of 3000 drawn digits (mean of 3 seeds) in ~19 s of fit, against
        97.1% for the notebook's network trained the same way for 8 epochs."""
        return replace(cls.fast_cnn(origin), pen_strokes=True)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def steps_per_epoch(self) -> int:
        return -(-self.train_size // self.batch_size)
