"""Classroom roles in real Chromium: the teacher on the server's machine, students through a
loopback relay from 127.0.0.2 (as a phone on the room's Wi-Fi would be seen)."""

from __future__ import annotations

import contextlib
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from mnist_core.drawings import DrawingStore
from mnist_core.preprocess import thumbnail_png
from mnist_core.runs.lease import TrainingLease
from tests import e2e, wire
from tests.relay import LoopbackRelay

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
PHONE = dict(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
             device_scale_factor=3)


@pytest.fixture(scope="module")
def classroom(tmp_path_factory, trained_store):
    """A server with a trained model and a few drawings, its teacher's URL and a student's."""
    root = tmp_path_factory.mktemp("classroom")
    models = root / "models"
    shutil.copytree(trained_store.root, models)
    add_drawings(models)
    server = e2e.AppServer(models, root / "server.log",
                           env={"MNIST_TEACHER_PASSWORD": PASSWORD}).start()
    try:
        with LoopbackRelay(server.port) as relay:
            yield server, relay, models
    finally:
        server.stop()


def add_drawings(models) -> None:
    store = DrawingStore(models / "drawings.db")
    run_id = next(p.name for p in models.iterdir() if p.is_dir())
    for label in (3, 5):
        store.add(np.zeros((28, 28), np.uint8), thumbnail_png(np.zeros((280, 280), np.uint8)),
                  label, np.eye(10)[label], run_id)


@contextlib.contextmanager
def visitor(browser, **options):
    """A page in a browser context of its own (a visitor), closed afterwards; it records
    page errors."""
    context = browser.new_context(**(options or {"viewport": {"width": 1300, "height": 1200}}))
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def main(page):
    """The page's own content, without Streamlit's toolbar and status widget."""
    return page.get_by_test_id("stMainBlockContainer")


def main_text(page) -> str:
    return page.get_by_test_id("stMain").inner_text()


def has_button(page, name: str) -> bool:
    """A button or a page link of the app's own page (not of Streamlit's toolbar)."""
    return (e2e.app_button(page, name).count() > 0
            or main(page).get_by_role("link", name=name).count() > 0)


def wait_for_button(page, name: str, timeout: float = 30000) -> None:
    button = e2e.app_button(page, name).or_(main(page).get_by_role("link", name=name))
    try:
        button.first.wait_for(timeout=timeout)
    except Exception as error:
        raise AssertionError(f"no {name!r} on the page, which reads:\n{main_text(page)}") from error


def assert_clean(page):
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.errors == []


# Per page: controls only the teacher has, and something everyone sees.
PAGES = {
    "": (["Presenter view: the QR code full screen"], "Dataset"),
    "Train": (["Start training", "Stop", "Notebook settings (5 epochs, batch 32, RMSprop)"],
              "Live training"),
    "Draw": ([], "Pen and comparison"),
    "Class_drawings": (["Prepare mnist.npz", "Fine-tune", "Delete all drawings"],
                       "Accuracy on drawings"),
    "Explore": ([], "x_train"),
    "Inside_the_network": ([], "Layer by layer"),
}


@pytest.mark.parametrize("path", list(PAGES))
def test_each_page_shows_teacher_controls_to_the_teacher_only(classroom, browser, path):
    server, relay, _ = classroom
    controls, shared = PAGES[path]
    with visitor(browser) as teacher, visitor(browser) as student:
        e2e.open_page(teacher, f"{server.url}/{path}")
        e2e.open_page(student, f"{relay.url}/{path}")
        for page in (teacher, student):
            page.get_by_text(shared).first.wait_for(timeout=60000)
            assert_clean(page)
        if path == "Class_drawings":  # the export/delete expander must be opened to see them
            teacher.get_by_text("Export or delete drawings").click()
        for name in controls:  # the teacher's page may still be arriving: wait for each
            wait_for_button(teacher, name)
        e2e.wait_until_idle(student)  # the student's whole page has arrived
        for name in controls:
            assert not has_button(student, name), name
            # In the page itself: Streamlit's status widget shows its own "Stop" while the
            # live panel reruns every second.
            assert main(student).get_by_text(name, exact=True).count() == 0, name
        sidebar = student.get_by_test_id("stSidebar")
        sidebar.get_by_text("Inside the network").wait_for(timeout=30000)
        assert sidebar.get_by_text("Join", exact=True).count() == 0  # the teacher's view
        assert "Students join at" not in main_text(student)
        assert "Deploy" not in student.inner_text("body")
        for page in (teacher, student):  # the first entry reads "Home", none the file's "app"
            sidebar_links = page.get_by_test_id("stSidebar").locator("a")
            sidebar_links.last.wait_for(timeout=30000)
            links = sidebar_links.all_inner_texts()
            assert links[0].split()[-1] == "Home" and not any(
                link.split()[-1] == "app" for link in links), links


def test_train_page_shows_students_the_draw_model_without_a_chooser(classroom, browser):
    server, relay, _ = classroom
    with visitor(browser) as student:
        e2e.open_page(student, f"{relay.url}/Train")
        student.get_by_text("The model the Draw page uses").wait_for(timeout=60000)
        assert student.get_by_text("Model for Draw").count() == 0
        assert student.get_by_text("Delete runs").count() == 0
        assert_clean(student)


def sign_in(page, password: str) -> None:
    """Type the password once the page is idle: a run still going (the last wrong try's)
    would empty the field after it was filled."""
    e2e.wait_until_idle(page)
    field = page.get_by_label("Teacher password")
    field.fill(password)
    field.press("Enter")


def test_password_flow_wrong_right_and_sign_out(classroom, browser):
    server, relay, _ = classroom
    with visitor(browser) as student:
        e2e.open_page(student, f"{relay.url}/Train")
        assert not has_button(student, "Start training")
        sign_in(student, "not it")
        student.get_by_text("Wrong password.").wait_for(timeout=30000)
        assert not has_button(student, "Start training")
        sign_in(student, PASSWORD)
        student.get_by_text("Signed in as the teacher").wait_for(timeout=30000)
        e2e.app_button(student, "Start training").wait_for(timeout=30000)
        # A dropped connection (a locked screen) comes back to the same, signed-in session.
        with student.expect_websocket(timeout=60000):  # the browser reconnects by itself
            relay.drop_connections()
        e2e.wait_until_idle(student)
        student.get_by_test_id("stSidebar").get_by_text("Class drawings").click()
        student.get_by_text("Fine-tune on the class's drawings").wait_for(timeout=60000)
        assert student.get_by_text("Signed in as the teacher").count() == 1
        student.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
        student.get_by_label("Teacher password").wait_for(timeout=30000)
        student.get_by_text("Fine-tune on the class's drawings").wait_for(state="detached",
                                                                           timeout=60000)
        assert not has_button(student, "Delete all drawings")
        assert_clean(student)


def test_the_join_qr_code_decodes_to_the_join_url(classroom, browser):
    zxingcpp = pytest.importorskip("zxingcpp")
    server, _, _ = classroom
    with visitor(browser) as teacher:
        e2e.open_page(teacher, server.url)
        heading = teacher.get_by_text(re.compile(r"Students join at http://")).first
        heading.wait_for(timeout=60000)
        url = re.search(r"http://\S+", heading.inner_text()).group(0)
        assert url.endswith(f":{server.port}")
        assert not url.startswith(("http://127.", "http://localhost", "http://[::1]"))
        image = teacher.get_by_role("img", name="Scan to join").first \
            if teacher.get_by_role("img", name="Scan to join").count() else \
            teacher.locator('[data-testid="stImage"] img').first
        png = teacher.request.get(server.url + image.get_attribute("src")
                                  if image.get_attribute("src").startswith("/")
                                  else image.get_attribute("src")).body()
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
        assert [code.text for code in decoded] == [url]
        teacher.get_by_text("Presenter view: the QR code full screen").click()
        teacher.wait_for_url(re.compile(r"/Join$"))
        teacher.get_by_text(url, exact=True).wait_for(timeout=30000)
        assert_clean(teacher)


def test_a_student_has_no_route_to_the_join_page(classroom, browser):
    """The navigation lists the teacher's pages for the teacher only: a student following
    the presenter view's link lands on Home, without the join address."""
    _, relay, _ = classroom
    with visitor(browser) as student:
        e2e.open_page(student, f"{relay.url}/Join")
        student.get_by_text("Dataset").first.wait_for(timeout=60000)
        assert not student.url.endswith("/Join"), student.url
        assert "Students join at" not in main_text(student)
        assert_clean(student)


def test_on_a_phone_a_student_draws_sees_the_prediction_and_clears(classroom, browser):
    _, relay, _ = classroom
    with visitor(browser, **PHONE) as phone:
        e2e.open_page(phone, f"{relay.url}/Draw")
        canvas = phone.locator("canvas.upper-canvas")
        canvas.wait_for(timeout=60000)
        scrolled = phone.evaluate("window.scrollY")
        e2e.draw_by_touch(phone, 7)
        assert e2e.final_prediction(phone, "7") == "7"
        assert phone.evaluate("window.scrollY") == scrolled  # the finger drew, not scrolled
        # The prediction is right under the canvas, on screen without scrolling.
        below = e2e.prediction(phone).bounding_box()
        assert below["y"] >= canvas.bounding_box()["y"]
        assert below["y"] + below["height"] <= PHONE["viewport"]["height"]  # on screen
        labels = phone.locator('[data-testid="stButtonGroup"] button')  # "No, it is a" 0-9
        for button in [e2e.app_button(phone, "Yes, it is a 7"), labels.nth(3), labels.nth(9)]:
            box = button.bounding_box()
            assert box["height"] >= 44 and box["width"] >= 44, box  # a thumb's size
        e2e.app_button(phone, "Clear").tap()
        e2e.prediction(phone).wait_for(state="detached", timeout=30000)
        assert phone.get_by_text("Draw a digit").count()
        assert_clean(phone)


def test_train_charts_fit_a_phone_screen(classroom, browser):
    _, relay, _ = classroom
    with visitor(browser, **PHONE) as phone:
        e2e.open_page(phone, f"{relay.url}/Train")
        charts = phone.locator('[data-testid="stVegaLiteChart"]')
        charts.first.wait_for(timeout=60000)
        widths = [charts.nth(i).bounding_box()["width"] for i in range(charts.count())]
        assert widths and max(widths) <= 390
        # The figures sit two or three a row (one a row, five of them would fill the screen
        # before the charts), each value whole.
        metrics = phone.get_by_test_id("stMetric")
        boxes = [metrics.nth(i).bounding_box() for i in range(metrics.count())]
        rows = {round(box["y"]) for box in boxes}
        assert len(boxes) >= 8 and len(rows) <= len(boxes) / 2
        values = phone.get_by_test_id("stMetricValue")
        assert values.evaluate_all("es => es.every(e => e.scrollWidth <= e.clientWidth + 1)")
        content = phone.get_by_test_id("stMain")
        assert content.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        assert_clean(phone)


async def _widget_ids(url: str, page: str, **options) -> dict[str, str]:
    """Every widget of `page` as a session of `url` sees it (label -> widget id), and the
    page's hash under "__page_hash__"."""
    async with wire.connect(url, **options) as ws:
        await ws.send(wire.rerun(page))
        run = await wire.read_run(ws)
    ids = {element.label: element.id for _, element in wire.elements(run)
           if hasattr(element, "label") and getattr(element, "id", "")}
    ids["__page_hash__"] = next((message.navigation.page_script_hash for message, _ in run
                                 if message.WhichOneof("type") == "navigation"), "")
    return ids


async def _press_as(url: str, page: str, page_hash: str, button: str,
                    checked: tuple[str, ...] = ()) -> None:
    """From a new session of `url`, tick the `checked` checkboxes and press `button` (widget
    ids), as a crafted websocket message would: load, tick, press, one run each, as a
    browser does."""
    async with wire.connect(url) as ws:
        for message in (wire.rerun(page, page_hash), wire.rerun(page, page_hash, checked=checked),
                        wire.rerun(page, page_hash, triggers=(button,), checked=checked)):
            await ws.send(message)
            await wire.read_run(ws)


def test_a_student_sending_teacher_widget_values_changes_nothing(classroom):
    server, relay, models = classroom
    runs_before = sorted(p.name for p in models.iterdir())
    drawings_before = DrawingStore(models / "drawings.db").count()
    sure = f"I want to delete all {drawings_before:,} drawings"
    presses = [("Train", "Start training", ()), ("Class_drawings", "Delete all drawings", (sure,))]
    for page, label, boxes in presses:
        ids = wire.run(_widget_ids(server.url, page))  # the teacher's session sees the button
        assert label in ids, sorted(ids)
        wire.run(_press_as(relay.url, page, ids["__page_hash__"], ids[label],
                           tuple(ids[b] for b in boxes)))
    assert TrainingLease(models).current() is None
    assert sorted(p.name for p in models.iterdir()) == runs_before
    assert DrawingStore(models / "drawings.db").count() == drawings_before
    # The same press from the teacher's own session does act: the ids were the real ones.
    ids = wire.run(_widget_ids(server.url, "Class_drawings"))
    wire.run(_press_as(server.url, "Class_drawings", ids["__page_hash__"],
                       ids["Delete all drawings"], (ids[sure],)))
    assert DrawingStore(models / "drawings.db").count() == 0
    add_drawings(models)  # as the other tests found them


async def _send_developer_message(url: str, kind: str) -> None:
    async with wire.connect(url) as ws:
        await ws.send(wire.rerun("Explore"))
        await wire.read_run(ws)  # the page has run: the session exists
        message = BackMsg()
        setattr(message, kind, True)
        await ws.send(message.SerializeToString())
        await ws.send(BackMsg(app_heartbeat=True).SerializeToString())
        while True:  # the heartbeat's answer comes after the message was handled
            reply = ForwardMsg()
            reply.ParseFromString(await ws.recv())
            if reply.WhichOneof("type") == "heartbeat_ack":
                return


def test_a_students_developer_messages_are_dropped_and_logged(classroom):
    server, relay, _ = classroom
    for kind in ("clear_cache", "set_run_on_save"):
        wire.run(_send_developer_message(relay.url, kind))
        log = server.log_path.read_text()
        assert f"Refused a {kind} message from a student from ::ffff:127.0.0.2" in log
    wire.run(_send_developer_message(server.url, "clear_cache"))  # the teacher's goes through
    assert "from a student from None" not in server.log_path.read_text()
    # Streamlit itself refuses its debug shutdown outside development mode: still serving.
    wire.run(_send_developer_message(relay.url, "debug_shutdown_runtime"))
    wire.run(_send_developer_message(relay.url, "clear_cache"))


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_fits_a_phone_screen(classroom, browser, path):
    _, relay, _ = classroom
    with visitor(browser, **PHONE) as phone:
        e2e.open_page(phone, f"{relay.url}/{path}")
        phone.get_by_text(PAGES[path][1]).first.wait_for(timeout=60000)
        content = phone.get_by_test_id("stMain")
        assert content.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), path
        too_wide = phone.evaluate("""() => [...document.querySelectorAll(
                '[data-testid="stMain"] img, [data-testid="stMain"] canvas')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.alt || e.tagName)""")
        assert too_wide == [], (path, too_wide)
        assert_clean(phone)


def test_a_page_that_rebinds_its_name_to_localhost_is_not_the_teacher(classroom):
    import socket

    server, _, _ = classroom
    # A websocket from 127.0.0.1 asking for the host name `attacker.example`, as a page that
    # rebinds its name to 127.0.0.1 would open it.
    name = f"http://attacker.example:{server.port}"
    ids = wire.run(_widget_ids(name, "Train", origin=name,
                               sock=socket.create_connection(("127.0.0.1", server.port))))
    assert "Start training" not in ids and "Stop" not in ids
    assert "Start training" in wire.run(_widget_ids(server.url, "Train"))  # localhost is


def _put_upload(port: int, session: str, size: int) -> int:
    """PUT a file of `size` bytes (announced, none sent) as Streamlit's uploader would."""
    import http.client

    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    token = generate_xsrf_token_string()  # a client can make its own cookie and header pair
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest("PUT", f"/_stcore/upload_file/{session}/file-1")
        for name, value in {"X-Xsrftoken": token, "Cookie": f"_streamlit_xsrf={token}",
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(size)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


async def _upload_from_a_live_session(url: str, port: int) -> int:
    import asyncio

    async with wire.connect(url) as ws:
        await ws.send(wire.rerun("Draw"))
        run = await wire.read_run(ws)
        session = next(message.new_session.initialize.session_id for message, _ in run
                       if message.WhichOneof("type") == "new_session")
        return await asyncio.to_thread(_put_upload, port, session, 200 * 2**20)


def test_a_student_cannot_upload_files_to_the_server(classroom):
    _, relay, _ = classroom
    # 200 MB announced: refused by the edge before Streamlit reads anything (and
    # server.maxUploadSize is 0 behind it).
    assert wire.run(_upload_from_a_live_session(relay.url, relay.port)) == 403


async def _largest_message(url: str, page: str) -> int:
    """The largest websocket message a teacher's session receives opening `page`."""
    async with wire.connect(url) as ws:
        await ws.send(wire.rerun(page))
        return max(size for _, size in await wire.read_run(ws))


def test_every_pages_largest_message_is_far_under_the_message_limit(classroom):
    server, _, _ = classroom
    limit = 8 * 2**20  # .streamlit/config.toml's server.maxMessageSize, in bytes
    config_text = (e2e.REPO / ".streamlit" / "config.toml").read_text()
    assert "maxMessageSize = 8\n" in config_text
    for page in ["", "Explore", "Train", "Draw", "Class_drawings", "Inside_the_network", "Join"]:
        largest = wire.run(_largest_message(server.url, page or "app"))
        assert largest < limit / 4, (page, largest)  # room for a 4x-density drawing
