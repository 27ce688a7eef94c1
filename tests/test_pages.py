"""Every page renders in Streamlit's AppTest and shows the right things."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mnist_core.config import BOUNDS, TrainConfig
from tests import app_run

pytestmark = pytest.mark.apptest

TIMEOUT = 60
REPO = Path(__file__).resolve().parent.parent
PAGES = ["home.py", *(f"pages/{p.name}" for p in sorted((REPO / "pages").glob("*.py")))]


def open_app(path: str, query: dict | None = None) -> AppTest:
    """The app at `path` (not run yet), as a visitor following a link."""
    return app_run.open_app(path, query, TIMEOUT)


def run_page(path: str) -> AppTest:
    """Run `path` through the app's navigation, as a visitor following a link."""
    app = open_app(path)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


@pytest.fixture(autouse=True)
def _each_test_is_a_new_server(fresh_server):
    yield


@pytest.fixture()
def with_trained_model(models_dir, trained_store):
    shutil.copytree(trained_store.root, models_dir, dirs_exist_ok=True)
    return models_dir


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_a_model(page, models_dir):
    app = run_page(page)
    assert app.title and not app.error


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_a_model(page, with_trained_model):
    app = run_page(page)
    assert app.title and not app.error


def test_home_shows_dataset_facts_and_the_model(with_trained_model, trained_run):
    app = run_page("home.py")
    text = " ".join(m.value for m in app.markdown)
    assert "(60000, 28, 28)" in text and "uint8" in text and "data/mnist" in text
    assert metric(app, "Images") == "60,000 + 10,000"
    assert metric(app, "Validation accuracy") == f"{trained_run.val_accuracy:.2%}"
    assert trained_run.run_id in text


def test_home_without_a_model(models_dir):
    app = run_page("home.py")
    assert metric(app, "Validation accuracy") == "no model yet"


def test_home_shows_a_broken_dataset_as_a_message(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "nowhere"))
    app = run_page("home.py")
    assert "could not be loaded" in app.error[0].value and "nowhere" in app.error[0].value
    assert "MNIST_DATA" in app.info[0].value


def test_explore_shows_shapes_and_the_label_of_the_chosen_index(models_dir, mnist):
    app = run_page("pages/1_Explore.py")
    assert metric(app, "x_train.shape") == "(60000, 28, 28)"
    assert metric(app, "x_valid.shape") == "(10000, 28, 28)"
    assert metric(app, "x_train.max()") == "255"
    assert metric(app, "y_train[0]") == "5"
    app.number_input(key="explore_index").set_value(7).run()
    assert metric(app, "y_train[7]") == str(mnist.y_train[7])
    app.radio(key="explore_split").set_value("x_valid").run()
    assert metric(app, "y_valid[7]") == str(mnist.y_valid[7])
    app.selectbox(key="explore_digit").set_value(3).run()
    assert not app.exception
    assert any("of the digit 3" in c.value for c in app.caption)


def test_train_form_bounds_are_the_config_bounds(models_dir):
    app = run_page("pages/2_Train.py")
    epochs = app.slider(key="train_epochs")
    assert (epochs.min, epochs.max) == BOUNDS["epochs"]
    for key, field in (("train_learning_rate", "learning_rate"),
                       ("train_train_size", "train_size"), ("train_seed", "seed")):
        widget = app.number_input(key=key)
        assert (widget.min, widget.max) == BOUNDS[field], key
    sizes = app.select_slider(key="train_batch_size").options
    assert int(sizes[0]) == BOUNDS["batch_size"][0] and int(sizes[-1]) == BOUNDS["batch_size"][1]
    assert any("Total parameters: **669,706**" in m.value for m in app.markdown)


def test_train_shows_results_of_a_finished_run(with_trained_model, trained_run):
    app = run_page("pages/2_Train.py")
    assert metric(app, "Validation accuracy") == f"{trained_run.val_accuracy:.2%}"
    mistakes = len(trained_run.record.evaluation.misclassified)
    assert metric(app, "Mistakes") == f"{mistakes} of 10,000"


def test_train_notebook_button_sets_the_notebook_settings(models_dir):
    app = run_page("pages/2_Train.py")
    app.button[0].click().run()
    assert app.slider(key="train_epochs").value == 5  # the app's own default is 4
    assert app.select_slider(key="train_batch_size").value == 32
    assert app.selectbox(key="train_optimizer").value == "rmsprop"
    code = app.expander[0].code[0].value if app.expander[0].code else ""
    assert "batch_size=32" in code and "RMSprop(learning_rate=0.001)" in code


def test_train_picking_the_fast_cnn_loads_its_recipe_and_its_code(models_dir):
    from mnist_core.models import count_params

    app = run_page("pages/2_Train.py")
    app.selectbox(key="train_model").set_value("fast_cnn").run()
    recipe = TrainConfig.fast_cnn()
    assert app.number_input(key="train_learning_rate").value == recipe.learning_rate
    assert app.slider(key="train_epochs").value == recipe.epochs
    assert app.checkbox(key="train_augment").value is True
    assert any(f"Total parameters: **{count_params('fast_cnn'):,}**" in m.value
               for m in app.markdown)
    code = app.expander[0].code[0].value
    assert "layers.BatchNormalization(momentum=0.9)" in code
    assert f"warmup_target={recipe.learning_rate!r}" in code


def test_draw_without_a_model_offers_training(models_dir):
    app = run_page("pages/3_Draw.py")
    assert "no trained model yet" in app.warning[0].value
    assert app.button[0].label == "Train the default model"


def test_draw_with_a_model_and_an_empty_canvas_hints_to_draw(with_trained_model, trained_run):
    app = run_page("pages/3_Draw.py")
    assert any("Draw a digit on the canvas" in i.value for i in app.info)
    assert not [m for m in app.metric if m.label == "Prediction"]
    assert any(trained_run.run_id in c.value for c in app.caption)


@pytest.fixture()
def drawings_db(tmp_path, monkeypatch, mnist):
    """A drawings database with 25 real validation digits standing in for drawings."""
    from mnist_core.drawings import DrawingStore
    from mnist_core.preprocess import thumbnail_png

    path = tmp_path / "drawings.db"
    monkeypatch.setenv("MNIST_DRAWINGS_DB", str(path))
    store = DrawingStore(path)
    for i in range(25):
        p = np.full(10, 0.01)
        p[mnist.y_valid[i]] = 0.91
        store.add(mnist.x_valid[i], thumbnail_png(mnist.x_valid[i]), int(mnist.y_valid[i]), p,
                  "run-x")
    return store


def test_class_drawings_reports_accuracy_next_to_mnist(with_trained_model, trained_run,
                                                       drawings_db, mnist):
    from mnist_core.data import flatten, normalize
    from mnist_core.inference import Classifier

    app = run_page("pages/4_Class_drawings.py")
    assert metric(app, "Labelled drawings") == "25"
    predicted = Classifier(trained_run.onnx_path).predict_proba(
        normalize(flatten(mnist.x_valid[:25]))).argmax(axis=1)
    expected = (predicted == mnist.y_valid[:25]).mean()
    assert metric(app, "Accuracy on drawings") == f"{expected:.1%}"
    assert metric(app, "Accuracy on MNIST validation") == f"{trained_run.val_accuracy:.1%}"
    assert any("the **20** drawings, with **5** held out" in m.value for m in app.markdown)
    # The teacher's gallery: every drawing as the model sees it, its mistakes first,
    # collapsed until the teacher opens it (the page may be on the projector).
    assert not next(e for e in app.expander if e.label.startswith("Gallery")).proto.expanded
    gallery = "".join(h.proto.body for h in app.get("html") if "figcaption" in h.proto.body)
    shown = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s))))
             for s in re.findall(r'src="data:image/png;base64,([^"]+)"', gallery)]
    assert len(shown) == 25
    index_of = {mnist.x_valid[i].tobytes(): i for i in range(25)}
    order = [index_of[image.tobytes()] for image in shown]
    assert sorted(order) == list(range(25))
    missed = [i for i in order if predicted[i] != mnist.y_valid[i]]
    assert order[:len(missed)] == missed
    assert gallery.count("✓</figcaption>") == 25 - len(missed)
    next(b for b in app.button if b.label == "Delete this drawing").click().run()
    assert drawings_db.count() == 24 and metric(app, "Labelled drawings") == "24"


def test_one_click_hides_a_drawing_from_the_gallery_not_from_the_data(with_trained_model,
                                                                      drawings_db):
    def gallery_ids(app) -> list[int]:
        return [int(i) for h in app.get("html") if "figcaption" in h.proto.body
                for i in re.findall(r"<figcaption[^>]*>#(\d+) ", h.proto.body)]

    app = run_page("pages/4_Class_drawings.py")
    first = gallery_ids(app)[0]
    app.button(key=f"class_hide_{first}").click().run()
    assert first not in gallery_ids(app) and len(gallery_ids(app)) == 24
    assert metric(app, "Labelled drawings") == "25" and drawings_db.count() == 25
    assert app.button(key="class_show_all").label == "Show the 1 hidden again"
    app.button(key="class_show_all").click().run()
    assert first in gallery_ids(app)


def test_a_student_cannot_hide_a_drawing(with_trained_model, drawings_db, monkeypatch):
    from serving import class_ui

    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    app = run_page("pages/4_Class_drawings.py")
    assert not [b for b in app.button if b.key and b.key.startswith("class_hide_")]
    # A crafted callback (the function the button calls) is refused where it acts.
    errors = []
    monkeypatch.setattr(class_ui.st, "error", errors.append)
    class_ui.hide_drawing(1)
    assert errors == ["Only the teacher can hide drawings."]
    assert drawings_db.hidden() == frozenset()


def test_class_drawings_empty_off_and_corrupt(with_trained_model, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DRAWINGS_DB", str(tmp_path / "none.db"))
    monkeypatch.setenv("MNIST_COLLECT_DRAWINGS", "0")
    app = run_page("pages/4_Class_drawings.py")
    assert "turned off" in app.info[0].value and "No labelled drawings yet" in app.info[1].value
    (tmp_path / "bad.db").write_bytes(b"garbage" * 500)
    monkeypatch.setenv("MNIST_DRAWINGS_DB", str(tmp_path / "bad.db"))
    app = run_page("pages/4_Class_drawings.py")
    assert "bad.db: the drawings database is corrupt" in app.error[0].value


def test_draw_names_a_run_trained_for_drawings_when_it_uses_another(with_trained_model,
                                                                    trained_run):
    import json

    from mnist_core.runs import folder
    from mnist_core.runs.store import ModelStore

    drawing = with_trained_model / "20990101-000000-dddd"
    shutil.copytree(with_trained_model / trained_run.run_id, drawing)
    for name in (folder.CONFIG, folder.RECORD):
        values = json.loads((drawing / name).read_text())
        config = values if name == folder.CONFIG else values["config"]
        config.update(pen_strokes=True, augment=True)
        (drawing / name).write_text(json.dumps(values))
    ModelStore(with_trained_model).choose(trained_run.run_id)
    app = run_page("pages/3_Draw.py")
    assert any("Run `20990101-000000-dddd` was trained for drawings" in i.value for i in app.info)
    ModelStore(with_trained_model).choose(drawing.name)
    app = run_page("pages/3_Draw.py")
    assert not any("trained for drawings" in i.value for i in app.info)


# Controls only the teacher has, per page (the browser tests check the same as a remote visitor).
TEACHER_CONTROLS = {
    "pages/2_Train.py": {"Start training", "Stop", "Use this model on the Draw page",
                         "Delete this run"},
    "pages/4_Class_drawings.py": {"Fine-tune", "Delete all drawings", "Prepare mnist.npz"},
}


def button_labels(app: AppTest) -> set[str]:
    return {b.label for b in app.button}


@pytest.fixture()
def with_model_and_drawings(with_trained_model, trained_run):
    from mnist_core.drawings import DrawingStore

    store = DrawingStore(with_trained_model / "drawings.db")
    for label in (1, 2, 3):
        store.add(np.zeros((28, 28), np.uint8), b"", label, np.eye(10)[label], trained_run.run_id)
    return with_trained_model


@pytest.mark.parametrize("page", sorted(TEACHER_CONTROLS))
def test_a_student_sees_no_teacher_control(page, with_model_and_drawings, monkeypatch):
    teacher = run_page(page)
    shown = button_labels(teacher) | {e.label for e in teacher.expander}
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    student = run_page(page)
    assert not (button_labels(student) & TEACHER_CONTROLS[page])
    assert TEACHER_CONTROLS[page] - {"Use this model on the Draw page"} <= shown | button_labels(
        teacher)
    assert not student.error


def test_a_student_waits_for_the_teachers_model_on_draw(models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    app = run_page("pages/3_Draw.py")
    assert "no trained model yet" in app.warning[0].value
    assert "Train the default model" not in button_labels(app)
    assert any("The teacher has not trained a model yet" in c.value for c in app.caption)


def test_a_student_who_types_the_password_becomes_the_teacher(with_trained_model, monkeypatch):
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    monkeypatch.setenv("MNIST_TEACHER_PASSWORD", "s3cret")
    app = run_page("pages/2_Train.py")
    assert "Start training" not in button_labels(app)
    app.text_input(key="roles_password").input("wrong").run()
    assert any("Wrong password" in e.value for e in app.sidebar.error)
    assert "Start training" not in button_labels(app)
    app.text_input(key="roles_password").input("s3cret").run()
    assert "Start training" in button_labels(app)
    app.sidebar.button(key="roles_sign_out").click().run()
    assert "Start training" not in button_labels(app)


def test_wrong_passwords_slow_a_visitor_down(models_dir, monkeypatch):
    from serving import classroom

    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    monkeypatch.setenv("MNIST_TEACHER_PASSWORD", "s3cret")
    app = run_page("home.py")
    for _ in range(classroom.FREE_TRIES):
        app.text_input(key="roles_password").input("wrong").run()
    app.text_input(key="roles_password").input("s3cret").run()  # right, but too soon
    assert any("Too many wrong passwords" in e.value for e in app.sidebar.error)
    assert not any("Signed in" in c.value for c in app.sidebar.caption)


def test_wrong_passwords_count_for_the_whole_ipv6_network_not_each_address(models_dir,
                                                                           monkeypatch):
    # On the room's IPv6 network each device is a student of its own, and a device can take
    # any number of addresses there: wrong passwords count for the network's /64.
    import ipaddress

    from serving import classroom, roles

    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    monkeypatch.setenv("MNIST_TEACHER_PASSWORD", "s3cret")
    room = (ipaddress.IPv6Network("fd00:c1a5::/64"),)
    monkeypatch.setattr(classroom, "local_ipv6_networks", lambda: room)

    def sign_in_from(address: str, password: str):
        monkeypatch.setattr(roles, "peer", lambda: address)
        app = run_page("home.py")
        app.text_input(key="roles_password").input(password).run()
        return app

    for tries in range(classroom.FREE_TRIES):
        sign_in_from(f"fd00:c1a5::{tries + 7}", "wrong")
    again = sign_in_from("fd00:c1a5::99", "s3cret")  # another address: right, but too soon
    assert any("Too many wrong passwords" in e.value for e in again.sidebar.error)
    elsewhere = sign_in_from("192.168.1.9", "s3cret")
    assert not elsewhere.sidebar.error
    assert any("Signed in" in c.value for c in elsewhere.sidebar.caption)


def test_single_user_mode_makes_a_remote_visitor_the_teacher(models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    monkeypatch.setenv("MNIST_SINGLE_USER", "1")
    assert "Start training" in button_labels(run_page("pages/2_Train.py"))


def test_the_teacher_is_told_how_to_set_a_password_and_students_are_not(models_dir,
                                                                         monkeypatch):
    hint = "MNIST_TEACHER_PASSWORD"
    assert any(hint in c.value for c in run_page("home.py").sidebar.caption)
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    assert not any(hint in c.value for c in run_page("home.py").sidebar.caption)


def test_an_unexpected_error_is_a_short_message_not_a_traceback(models_dir, monkeypatch):
    from serving import ui

    def broken():
        raise RuntimeError("/secret/server/path exploded")

    monkeypatch.setattr(ui, "dataset", broken)
    app = open_app("pages/1_Explore.py").run()
    shown = [(e.message, e.stack_trace, e.is_markdown) for e in app.exception]
    assert shown and "/secret" not in str(shown) and "exploded" not in str(shown)
    assert all(not trace for _, trace, _ in shown)


def test_explore_opens_at_the_image_of_a_shared_link(models_dir, mnist):
    app = open_app("pages/1_Explore.py", {"split": "x_valid", "index": "42"}).run()
    assert metric(app, "y_valid[42]") == str(mnist.y_valid[42])
    for bad in ({"split": "../etc", "index": "-3"}, {"index": "99999999"}, {"index": "1e3"}):
        app = open_app("pages/1_Explore.py", bad).run()
        assert metric(app, "y_train[0]") == str(mnist.y_train[0]) and not app.exception


def test_train_opens_at_the_run_of_a_shared_link(with_trained_model, trained_run):
    older = "20000101-000000-0000"  # not the newest, so not what the page shows by default
    shutil.copytree(with_trained_model / trained_run.run_id, with_trained_model / older)
    for wanted, shown in ((older, older), ("../etc", trained_run.run_id)):
        app = open_app("pages/2_Train.py", {"run": wanted}).run()
        assert app.selectbox(key="train_result_run").value == shown


def test_the_teacher_is_told_what_blocks_students_when_nobody_joins(models_dir, monkeypatch):
    from serving import classroom_ui

    monkeypatch.setattr(classroom_ui, "NOBODY_JOINED_AFTER", -1)
    monkeypatch.setenv(classroom_ui.classroom.JOIN_URL_ENV, "http://192.168.1.20:8501")
    app = run_page("home.py")
    assert any("Students join at **http://192.168.1.20:8501**" in m.value for m in app.markdown)
    assert any("Nobody has joined yet" in i.value and "firewall" in i.value for i in app.info)


def test_train_shows_the_mistakes_it_was_most_sure_about_as_the_digits_themselves(
        with_trained_model, trained_run, mnist):
    app = run_page("pages/2_Train.py")
    wrong = trained_run.record.evaluation.misclassified[:30]
    gallery = next(h.proto.body for h in app.get("html") if "→" in h.proto.body)
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', gallery)
    shown = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in sources]
    assert len(shown) == len(wrong) > 0
    for image, mistake in zip(shown, wrong, strict=True):
        assert np.array_equal(image, mnist.x_valid[mistake.index])  # 28x28, as it is
        assert f"{mistake.true}→{mistake.predicted} {mistake.confidence:.0%}" in gallery


def test_a_sign_in_sent_as_the_connection_closed_is_refused_and_not_counted(models_dir,
                                                                           monkeypatch):
    # A session whose websocket has just closed has no address: its password try would meet
    # a fresh counter, so it is refused, and it makes nobody the teacher.
    from serving import classroom, roles

    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    monkeypatch.setenv("MNIST_TEACHER_PASSWORD", "s3cret")
    monkeypatch.setattr(roles, "peer", lambda: classroom.UNKNOWN)
    app = run_page("home.py")
    app.text_input(key="roles_password").input("s3cret").run()
    assert any("connection was lost" in e.value for e in app.sidebar.error)
    assert not any("Signed in" in c.value for c in app.sidebar.caption)
    assert roles._throttle().wait_seconds(classroom.network_key(classroom.UNKNOWN, "")) == 0


def test_a_drawing_saved_as_the_connection_closed_is_refused(with_trained_model, mnist,
                                                            monkeypatch):
    import numpy as np

    from mnist_core.drawings import DrawingStore
    from serving import canvas, classroom, roles

    seven = mnist.x_valid[int(np.flatnonzero(mnist.y_valid == 7)[0])]
    gray = np.kron(seven, np.ones((10, 10), np.uint8))  # the canvas a student drew it on
    monkeypatch.setattr(canvas, "digit_canvas", lambda key, stroke_width: np.dstack(
        [gray, gray, gray, np.full_like(gray, 255)]))
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    app = run_page("pages/3_Draw.py")
    yes = next(b for b in app.button if b.label.startswith("Yes, it is a"))
    monkeypatch.setattr(roles, "peer", lambda: classroom.UNKNOWN)  # the socket just closed
    yes.click().run()
    assert any("connection was lost" in w.value for w in app.warning)
    assert DrawingStore(with_trained_model / "drawings.db").count() == 0
    monkeypatch.setattr(roles, "peer", lambda: "192.168.1.23")  # connected: it is saved
    next(b for b in app.button if b.label.startswith("Yes, it is a")).click().run()
    assert DrawingStore(with_trained_model / "drawings.db").count() == 1


def sidebar_links(app: AppTest) -> list[str]:
    return [e.proto.label for e in app.sidebar if type(e).__name__ == "PageLink"]


def test_one_navigation_routes_a_student_to_no_teachers_page(models_dir, monkeypatch):
    teacher = run_page("home.py")
    assert sidebar_links(teacher) == ["Home", "Explore", "Train", "Draw", "Class drawings",
                                      "Inside the network", "Join"]
    monkeypatch.setenv("MNIST_TRUST_LOCALHOST", "0")
    student = run_page("home.py")
    assert sidebar_links(student) == sidebar_links(teacher)[:-1]
    with pytest.raises(ValueError, match="navigation page"):  # not even a route to it
        student.switch_page(app_run.from_main_script("pages/6_Join.py"))


def test_every_page_runs_through_the_navigation(models_dir):
    """A link to a page runs the app's main script, which draws the sidebar, then the page."""
    for page in PAGES[1:]:
        app = run_page(page)
        assert sidebar_links(app)[0] == "Home", page
        assert app.title[0].value != run_page("home.py").title[0].value, page
