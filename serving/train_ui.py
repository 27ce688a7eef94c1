"""The Train page's parts: the teacher's settings and the model they build, the live
training (refreshed while it runs), a run's results, all runs compared, and the teacher's
choice of the Draw model and deletions."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from mnist_core import plots
from mnist_core.config import BOUNDS, MODEL_LABELS, MODELS, OPTIMIZERS, PRECISIONS, TrainConfig
from mnist_core.devices import training_device
from mnist_core.models import count_params, keras_code, summary
from mnist_core.runs.store import Run, Scan
from mnist_core.training.follow import Snapshot
from serving import roles, ui

GALLERY_SIZE = 30
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
NOT_SETTINGS = ("fine_tune_from", "origin")
EPOCH_CHARTS_EVERY = 5.0  # seconds between two refreshes of the per-epoch charts
LIVE_EVERY = 1.0  # seconds between two refreshes of the live panel while a training runs
# With no training running nothing on the page changes, and each refresh would re-send it to
# every watching browser (~0.1 of a core in each browser, ~0.03 in the server per visitor):
# an idle page only checks this often whether a training has started elsewhere.
IDLE_CHECK_EVERY = 3.0


def bounds_help(name: str) -> str:
    low, high = BOUNDS[name]
    return f"{low} to {high}"


def use_notebook_settings() -> None:
    for name, value in TrainConfig.notebook().to_dict().items():
        if name not in NOT_SETTINGS:
            st.session_state[f"train_{name}"] = value


def use_model_recipe() -> None:
    """Picking a model loads the settings it trains best with (TrainConfig.recipe)."""
    for name, value in TrainConfig.recipe(st.session_state.train_model).to_dict().items():
        if name not in NOT_SETTINGS:
            st.session_state[f"train_{name}"] = value


def settings_panel() -> TrainConfig:
    """The teacher's settings; their bounds are TrainConfig's."""
    for name, value in TrainConfig().to_dict().items():
        if name not in NOT_SETTINGS:
            st.session_state.setdefault(f"train_{name}", value)
    st.subheader("Settings")
    st.button("Notebook settings (5 epochs, batch 32, RMSprop)",
              on_click=use_notebook_settings,
              help="The workshop notebook's exact fit: slower, same network")
    model = st.selectbox("Model", MODELS, key="train_model", format_func=MODEL_LABELS.get,
                         on_change=use_model_recipe)
    left, right = st.columns(2)
    values = dict(
        model=model,
        epochs=left.slider("Epochs", *BOUNDS["epochs"], key="train_epochs",
                           help=bounds_help("epochs")),
        batch_size=right.select_slider("Batch size", BATCH_SIZES, key="train_batch_size",
                                       help="images per step; " + bounds_help("batch_size")),
        optimizer=left.selectbox("Optimizer", OPTIMIZERS, key="train_optimizer"),
        learning_rate=right.number_input(
            "Learning rate", *BOUNDS["learning_rate"], key="train_learning_rate",
            format="%.5f", step=0.0005, help=bounds_help("learning_rate")),
        train_size=left.number_input("Training images", *BOUNDS["train_size"], step=1000,
                                     key="train_train_size", help=bounds_help("train_size")),
        seed=right.number_input("Seed", *BOUNDS["seed"], key="train_seed"),
        precision=left.selectbox("Precision", PRECISIONS, key="train_precision",
                                 help="auto = bfloat16 mixed precision where the CPU has it"),
        lr_schedule=right.checkbox("Warm-up + cosine LR schedule", key="train_lr_schedule"),
        validation=right.checkbox("Validate every epoch", key="train_validation"),
        augment=right.checkbox("Augment (rotate, scale, slant, shift)", key="train_augment",
                               help="a mild random change of every image: better on drawn "
                                    "digits and on MNIST"),
        pen_strokes=right.checkbox("Pen strokes", key="train_pen_strokes",
                                   help="redraw half of each batch with a pen along each "
                                        "digit's skeleton, as a mouse draws: better on drawn "
                                        "digits"),
    )
    try:
        return TrainConfig(origin="train_page", **values)
    except ValueError as exc:  # the widgets' bounds are the config's: a safety net
        st.error(str(exc))
        st.stop()


def model_panel(config: TrainConfig) -> None:
    st.subheader("The model")
    kind, label = training_device()
    st.caption(f"Will train on **{kind}: {label}**")
    st.dataframe(pd.DataFrame([{**row, "output_shape": str(row["output_shape"])}
                               for row in summary(config.model)]),
                 hide_index=True, width="stretch")
    st.markdown(f"Total parameters: **{count_params(config.model):,}**")
    with st.expander("Show code: the same training in plain Keras"):
        st.code(keras_code(config), language="python")


def render_live(snap: Snapshot) -> None:
    if snap.notice:
        st.info(snap.notice)
    if snap.state == "idle":
        st.info("No training yet on this server. Press **Start training**."
                if roles.is_teacher() else
                "No training yet. When the teacher starts one, watch it learn here, live.")
        return
    if snap.config is None:  # the newest run's config.json cannot be read
        st.warning(f"The latest run, `{snap.run_id}`, is {snap.error}.")
        return
    c = snap.config
    status = {
        "starting": "Starting TensorFlow in the training process...",
        "running": f"Training {c.model}: epoch {snap.epoch}/{c.epochs}",
        "stopping": "Stopping after the current batch...",
    }.get(snap.state, f"Training {snap.state}")
    st.progress(snap.progress, text=status)
    with ui.metric_row():
        st.metric("Epoch", f"{snap.epoch}/{c.epochs}")
        st.metric("Samples/s", f"{snap.samples_per_second:,.0f}"
                  if snap.samples_per_second else "-")
        st.metric("Elapsed", ui.format_seconds(snap.elapsed))
        st.metric("ETA", ui.format_seconds(snap.eta) if snap.active else "done")
        st.metric("Device", snap.device_kind or "-", help=snap.device)
    if snap.error:
        st.error(f"**{snap.message or 'Training failed.'}**")
        if roles.is_teacher():  # the worker's log tail: server paths and a traceback
            st.code(snap.error, language=None)
    elif snap.state in ("finished", "stopped") and snap.message:
        st.success(snap.message)
    if snap.steps:
        st.markdown("**Per batch** (smoothed; Keras reports the epoch's running mean)")
        for column, metric, values in zip(st.columns(2), ("loss", "accuracy"),
                                          (snap.batch_loss, snap.batch_accuracy), strict=True):
            column.altair_chart(plots.batch_curve_chart(snap.steps, values,
                                                        snap.steps_per_epoch, metric),
                                width="stretch")


def epoch_panel() -> None:
    """The per-epoch charts change once an epoch: refreshed less often than the rest, as
    every refresh re-sends them to every watching browser."""
    history = list(ui.trainer().snapshot().history)
    if history:
        st.markdown("**Per epoch**: training vs validation")
        for column, metric in zip(st.columns(2), ("loss", "accuracy"), strict=True):
            column.altair_chart(plots.epoch_curve_chart(history, metric), width="stretch")


def rerun_when_training_ends(snap: Snapshot) -> None:
    """When a training this page watched ends, rerun the whole page once so results and
    history update."""
    st.session_state.setdefault("train_seen_active", False)
    if snap.active:
        st.session_state.train_seen_active = True
    elif st.session_state.train_seen_active:
        st.session_state.train_seen_active = False
        st.rerun()


def live_panel() -> None:
    snap = ui.trainer().snapshot()
    render_live(snap)
    rerun_when_training_ends(snap)


def wait_for_a_training(seen: tuple[str | None, str]) -> None:
    """An idle page: rerun it when a training started (or ended) since it was drawn, from
    another device or the command line. Shows nothing, so a check re-sends nothing."""
    snap = ui.trainer().snapshot()
    if (snap.run_id, snap.state) != seen:  # a running training's state is never an idle one
        st.rerun()


def results(run: Run) -> None:
    """A run's validation results: its accuracy, confusion matrix and worst mistakes."""
    data = ui.dataset()
    record = run.record
    evaluation = record.evaluation
    with ui.metric_row():
        st.metric("Validation accuracy", f"{evaluation.accuracy:.2%}")
        st.metric("Mistakes", f"{len(evaluation.misclassified)} of {len(data.y_valid):,}")
        st.metric("Training time", ui.format_seconds(record.fit_seconds))
        st.metric("Trained on", record.device_kind, help=record.device)
    left, right = st.columns(2)
    with left:
        st.subheader("Confusion matrix")
        st.image(ui.confusion_png(evaluation.confusion_matrix))
    with right:
        st.subheader("Accuracy per digit")
        st.altair_chart(plots.per_class_accuracy_chart(evaluation.per_class_accuracy),
                        width="stretch")
    st.subheader("Mistakes it was most sure about")
    wrong = evaluation.misclassified[:GALLERY_SIZE]
    if wrong:
        st.html(plots.images_html(
            [(data.x_valid[m.index], f"{m.true}→{m.predicted} {m.confidence:.0%}")
             for m in wrong], width=64, caption_colors=["#c0392b"] * len(wrong)))
        st.caption("x_valid images: true digit → predicted digit, confidence")


def run_in_link(by_id: dict[str, Run]) -> None:
    """The run shown is in the URL (`?run=<id>`), so a link points at its results."""
    wanted = st.query_params.get("run")
    if wanted in by_id and "train_result_run" not in st.session_state:
        st.session_state.train_result_run = wanted


def remember_run_in_link() -> None:
    st.query_params["run"] = st.session_state.train_result_run


def all_runs(scan: Scan, by_id: dict[str, Run]) -> None:
    st.dataframe(pd.DataFrame([r.table_row() for r in scan.usable]), hide_index=True,
                 width="stretch",
                 column_config={"val accuracy": st.column_config.NumberColumn(format="%.4f")})
    others = [r for r in scan.runs if not r.usable]
    if others:
        with st.expander(f"{len(others)} run(s) without a model"):
            for r in others:
                st.markdown(f"- `{r.run_id}` **{r.status}**: {r.error or ''}")
    compare = st.multiselect("Compare runs", list(by_id), default=list(by_id)[:2],
                             format_func=lambda r: by_id[r].label(), key="train_compare")
    metric = st.radio("Metric", ["val_accuracy", "val_loss", "accuracy", "loss"],
                      horizontal=True, key="train_compare_metric")
    series = [(by_id[r].label(), by_id[r].record.history.get(metric, ())) for r in compare]
    if compare:
        st.altair_chart(plots.compare_runs_chart(series, metric), width="stretch")


def draw_model_panel(by_id: dict[str, Run]) -> None:
    """Which model the Draw page uses and why; the teacher chooses, pins or unpins it."""
    st.subheader("The model the Draw page uses")
    choice = ui.draw_model()
    if choice.run is None:
        st.caption(choice.why)
    else:
        st.markdown(f"**{choice.run.label()}**  \n{choice.why}")
    if not roles.is_teacher():
        return
    ids = list(by_id)
    current = choice.run.run_id if choice.run and choice.run.run_id in by_id else ids[0]
    pick = st.selectbox("Model for Draw", ids, format_func=lambda r: by_id[r].label(),
                        index=ids.index(current), key="train_draw_model")
    pin = st.checkbox("Pin it: a new training from this page does not replace it",
                      key="train_draw_pin", value=choice.pinned)
    if (pick, pin) != (current, choice.pinned) and st.button("Use this model on the Draw page"):
        if ui.choose_model(pick, pin):
            st.rerun()


def delete_panel(scan: Scan) -> None:
    """The teacher removes runs the class no longer needs (never the one training)."""
    with st.expander("Delete runs"):
        ids = [r.run_id for r in scan.runs]
        doomed = st.selectbox("Run", ids, key="train_delete_run")
        sure = st.checkbox("I want to delete this run and its model", key="train_delete_sure")
        if st.button("Delete this run", icon=":material/delete:", disabled=not sure):
            if ui.delete_run(doomed):
                st.rerun()


def teacher_controls() -> None:
    """The settings, the model they build, and Start / Stop."""
    settings_column, about_column = st.columns([1, 1], gap="large")
    with settings_column:
        config = settings_panel()
    with about_column:
        model_panel(config)
    buttons = st.columns([1, 1, 3])
    if buttons[0].button("Start training", type="primary", icon=":material/play_arrow:",
                         width="stretch"):
        ui.start_training(config)
    if buttons[1].button("Stop", icon=":material/stop:", width="stretch"):
        ui.stop_training()


def live_section() -> None:
    """The live panels. Fragments refresh themselves only while a training runs; students'
    pages less often in a big class (ui.refresh_every). An idle page only checks whether a
    training has started."""
    now = ui.trainer().snapshot()
    st.fragment(live_panel, run_every=ui.refresh_every(LIVE_EVERY) if now.active else None)()
    st.fragment(epoch_panel,
                run_every=ui.refresh_every(EPOCH_CHARTS_EVERY) if now.active else None)()
    if not now.active:
        st.fragment(wait_for_a_training, run_every=ui.refresh_every(IDLE_CHECK_EVERY))(
            (now.run_id, now.state))
