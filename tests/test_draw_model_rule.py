"""The Draw model, one rule (mnist_core.runs.store), clause by clause, on runs written as the
worker writes them: a pin holds; a healthy run from the Train page (or Draw's "Train the
default model") takes over when it finishes; else the teacher's choice; else, with no choice,
the newest healthy run. A CLI run or a fine-tune never takes over by itself, and an unhealthy
run never becomes the Draw model by itself."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from mnist_core.config import TrainConfig
from mnist_core.runs import folder, store
from mnist_core.runs.record import read_config
from mnist_core.runs.store import ActionRefused, ModelStore
from mnist_core.training.cli import config_from_args, parse_args
from tests.test_record import finished_run

pytestmark = pytest.mark.unit

PARENT = "20260101-110000-aaaa"


@pytest.fixture()
def models(tmp_path):
    return ModelStore(tmp_path / "models")


def saved(models: ModelStore, n: int, origin: str = "cli", ago: float = 0.0, **record) -> str:
    """Run number `n` (a larger n started later), saved `ago` seconds before now (negative:
    after now, as a training that finishes after a choice made now)."""
    run_id = f"20260101-12{n:04d}-abcd"
    config = (TrainConfig(epochs=2, fine_tune_from=PARENT) if origin == "fine_tune"
              else TrainConfig(epochs=2, origin=origin))
    finished_run(models.root, run_id, config, finished=time.time() - ago, **record)
    return run_id


def draw_model(models: ModelStore) -> tuple[str | None, str]:
    current = models.current_choice()
    run_id = current.run.run_id if current.run else None
    assert getattr(models.current(), "run_id", None) == run_id  # the same rule, one answer
    return run_id, current.why


def test_with_no_choice_the_newest_healthy_run_is_used_whoever_started_it(models):
    assert draw_model(models) == (None, store.NONE_YET)
    saved(models, 1, "cli", ago=300)
    tuned = saved(models, 2, "fine_tune", ago=200)
    assert draw_model(models) == (tuned, store.NEWEST)
    saved(models, 3, "cli", ago=100, status="stopped")  # a finished run before a stopped one
    assert draw_model(models) == (tuned, store.NEWEST)


def test_a_training_from_the_train_page_becomes_the_draw_model_when_it_finishes(models):
    cli = saved(models, 1, "cli", ago=300)
    saved(models, 2, "train_page", ago=200)  # finished before the choice below
    models.choose(cli)
    assert draw_model(models) == (cli, store.CHOSEN)
    demo = saved(models, 3, "train_page", ago=-60)  # finishes after it: the live demo
    assert draw_model(models) == (demo, store.LIVE_DEMO["train_page"])


def test_draw_s_train_the_default_model_counts_like_the_train_page(models):
    default = saved(models, 1, "draw_page", ago=200)
    assert draw_model(models) == (default, store.LIVE_DEMO["draw_page"])
    saved(models, 2, "cli", ago=100)  # a later CLI run does not replace the demo's model
    assert draw_model(models) == (default, store.LIVE_DEMO["draw_page"])


def test_a_cli_run_or_a_fine_tune_replaces_the_draw_model_only_when_chosen(models):
    first = saved(models, 1, "train_page", ago=300)
    assert draw_model(models) == (first, store.LIVE_DEMO["train_page"])
    cli = saved(models, 2, "cli", ago=200)
    tuned = saved(models, 3, "fine_tune", ago=100)
    assert draw_model(models) == (first, store.LIVE_DEMO["train_page"])
    models.choose(cli)
    saved(models, 4, "fine_tune", ago=-60)  # finishes after the choice: still not by itself
    saved(models, 5, "cli", ago=-60)
    assert draw_model(models) == (cli, store.CHOSEN)
    models.choose(tuned)
    assert draw_model(models) == (tuned, store.CHOSEN)


def test_a_pinned_model_stays_until_it_is_unpinned(models):
    pinned = saved(models, 1, "cli", ago=300)
    models.choose(pinned, pinned=True)
    current = models.current_choice()
    assert (current.run.run_id, current.why, current.pinned) == (pinned, store.PINNED, True)
    choice = models.root / folder.CHOICE  # as if pinned 200 s ago...
    choice.write_text(json.dumps({**json.loads(choice.read_text()), "t": time.time() - 200}))
    saved(models, 2, "train_page", ago=100)  # ...and the class's demo finished while pinned
    assert draw_model(models) == (pinned, store.PINNED)
    models.unpin()  # keeps the model; only the next training from the Train page replaces it
    assert draw_model(models) == (pinned, store.CHOSEN)
    assert json.loads(choice.read_text())["pinned"] is False
    demo = saved(models, 3, "train_page", ago=-120)
    assert draw_model(models) == (demo, store.LIVE_DEMO["train_page"])
    models.unpin()  # nothing pinned: nothing changes
    assert draw_model(models) == (demo, store.LIVE_DEMO["train_page"])


UNHEALTHY = [pytest.param({"loss": math.nan}, "not a number", id="NaN loss"),
             pytest.param({"loss": math.inf}, "not a number", id="infinite loss"),
             pytest.param({"accuracy": 0.3}, "near chance", id="accuracy near chance")]


@pytest.mark.parametrize("numbers, why", UNHEALTHY)
def test_an_unhealthy_run_never_becomes_the_draw_model_by_itself(models, numbers, why):
    bad = saved(models, 3, "train_page", ago=100, **numbers)
    assert draw_model(models) == (None, store.NONE_YET)  # not even as the only run
    assert why in models.get(bad).unhealthy and not models.get(bad).healthy
    good = saved(models, 1, "cli", ago=300)
    assert draw_model(models) == (good, store.NEWEST)
    models.choose(good)
    saved(models, 4, "train_page", ago=-60, **numbers)  # a demo that diverged: not taken
    assert draw_model(models) == (good, store.CHOSEN)


def test_choose_refuses_non_finite_numbers_and_no_model_but_allows_a_weak_model(models):
    diverged = saved(models, 1, "cli", loss=math.nan)
    weak = saved(models, 2, "cli", accuracy=0.2)
    for run_id, message in ((diverged, "diverged"), ("20250101-000000-0000", "no saved model"),
                            ("../../etc", "no saved model"), ("", "no saved model")):
        with pytest.raises(ActionRefused, match=message):
            models.choose(run_id)
    assert not (models.root / folder.CHOICE).exists()
    onnx = models.root / weak / folder.ONNX_FILE
    model = onnx.read_bytes()
    onnx.write_bytes(b"")
    with pytest.raises(ActionRefused, match="no saved model"):
        models.choose(weak)  # unreadable now
    onnx.write_bytes(model)
    # A teacher may show what a barely trained network does: chosen or pinned, not by itself.
    models.choose(weak)
    assert draw_model(models) == (weak, store.CHOSEN)
    models.choose(weak, pinned=True)
    assert draw_model(models) == (weak, store.PINNED)


def test_a_choice_naming_a_run_gone_or_unusable_counts_as_no_choice(models):
    saved(models, 1, "cli", ago=300)
    chosen = saved(models, 2, "cli", ago=200)
    newest = saved(models, 3, "cli", ago=100)
    models.choose(chosen, pinned=True)
    assert models.delete(chosen)
    assert draw_model(models) == (newest, store.NEWEST)
    diverged = saved(models, 4, "cli", ago=50, loss=math.nan)
    (models.root / folder.CHOICE).write_text(json.dumps(  # by hand: choose() refuses it
        {"run_id": diverged, "t": time.time(), "pinned": True}))
    assert draw_model(models) == (newest, store.NEWEST)


def test_choose_writes_current_json_atomically_with_the_pinned_flag(models, monkeypatch):
    first, second = saved(models, 1), saved(models, 2)
    models.choose(first, pinned=True)
    path = models.root / folder.CHOICE
    values = json.loads(path.read_text())
    assert set(values) == {"run_id", "t", "pinned"} and values["pinned"] is True
    assert values["run_id"] == first and abs(values["t"] - time.time()) < 60

    def crash(*args):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash)  # the rename never happens: a killed write
        with pytest.raises(OSError, match="disk full"):
            models.choose(second)
    assert json.loads(path.read_text()) == values  # the old choice, whole
    assert [p.name for p in models.root.iterdir() if folder.is_temporary(p.name)] == []
    assert draw_model(ModelStore(models.root)) == (first, store.PINNED)  # any server, same


def test_every_run_has_an_origin_and_old_configs_read_as_the_cli(models, tmp_path):
    assert TrainConfig.from_dict({}).origin == "cli"  # a config.json from before origins
    assert TrainConfig(fine_tune_from=PARENT, origin="train_page").origin == "fine_tune"
    assert TrainConfig.for_drawing(origin="draw_page").origin == "draw_page"
    assert TrainConfig.notebook(origin="train_page").origin == "train_page"
    assert config_from_args(parse_args(["--drawing", "--choose"])).origin == "cli"
    for bad in ("martian", "fine_tune", 5):
        with pytest.raises(ValueError, match="origin"):
            TrainConfig(origin=bad)
    config = TrainConfig(origin="train_page")
    assert TrainConfig.from_dict(config.to_dict()) == config
    prepared = folder.prepare_run(tmp_path / "prepared", config)  # what Trainer.start writes
    assert read_config(prepared / folder.CONFIG).origin == "train_page"
    old = saved(models, 1, "cli")
    values = json.loads((models.root / old / folder.CONFIG).read_text())
    del values["origin"]
    (models.root / old / folder.CONFIG).write_text(json.dumps(values))
    assert models.get(old).origin == "cli" and models.get(old).usable
