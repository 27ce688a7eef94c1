"""Hostile canvas values sent straight over Streamlit's websocket, as a student's script
could: each is refused with one short message, nothing else happens, and the server's
memory stays bounded."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests import e2e, wire
from tests.hostile import HOSTILE, REFUSED, url_of, value
from tests.relay import LoopbackRelay

pytestmark = pytest.mark.browser
MEMORY_BOUND_MB = 150  # growth allowed over the whole attack (one decoded canvas is ~1 MB)


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_store):
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(trained_store.root, root / "models")
    app = e2e.AppServer(root / "models", root / "server.log").start()
    yield app
    app.stop()


async def attack(server) -> dict[str, tuple[str | None, list[str]]]:
    shown = {}
    async with wire.DrawVisitor(server.url, timeout=60) as visitor:
        assert (await visitor.draw(7))[0] == "7"
        shown["memory before"] = server.rss_mb()  # warm: MNIST, the model, a drawing
        for name, crafted in HOSTILE.items():
            prediction = await visitor.send_value(crafted)
            shown[name] = (prediction, list(visitor.alerts))
        shown["a real drawing after all that"] = ((await visitor.draw(1))[0], [])
    return shown


def test_hostile_canvas_values_are_refused_with_one_message_and_bounded_memory(server):
    shown = wire.run(attack(server))
    for name in HOSTILE:
        prediction, alerts = shown[name]
        assert prediction is None, name
        assert any(REFUSED in a for a in alerts), (name, alerts)
    assert shown["a real drawing after all that"][0] == "1"
    assert server.rss_mb() - shown["memory before"] < MEMORY_BOUND_MB
    log = server.log_path.read_text()
    assert "Refused a drawing" in log or "Refused a canvas value" in log
    assert "Traceback" not in log


async def not_json(url: str) -> str:
    """A canvas value that is not JSON fails inside Streamlit itself, before the page's
    code: the sender's own page shows Streamlit's short generic message (a reload starts
    it afresh)."""
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        try:
            await visitor.send_value("{{{ not JSON")
            return " ".join(visitor.alerts)
        except wire.ScriptError as exc:
            return str(exc)


def test_a_widget_value_that_is_not_json_shows_a_short_message_and_harms_nobody(server):
    shown = wire.run(not_json(server.url))
    assert "JSONDecodeError" not in shown and "Traceback" not in shown and "/" not in shown
    wire.run(_still_serves(server.url))  # every other visitor draws on


async def oversized(url: str) -> None:
    """A message beyond server.maxMessageSize: the server drops that connection."""
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        try:
            await visitor.send_value(value(url_of(b"\x89PNG" + b"\x00" * (9 * 2**20))))
        except Exception:  # the connection is closed on us: that is the point
            return
        raise AssertionError("a 12 MB message was accepted")


def test_a_message_larger_than_the_limit_closes_only_that_connection(server):
    wire.run(_still_serves(server.url))  # warm
    before = server.rss_mb()
    wire.run(oversized(server.url))
    wire.run(_still_serves(server.url))
    assert server.rss_mb() - before < MEMORY_BOUND_MB


async def _still_serves(url: str) -> None:
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        assert (await visitor.draw(7))[0] == "7"


FLOOD = 400  # canvas values a student's script sends, one every FLOOD_PACE seconds
FLOOD_PACE = 0.005  # faster than runs finish, so each one asks for another


async def flood(student_url: str, teacher_url: str) -> tuple[int, str | None, str]:
    """A student's script sends FLOOD drawings without waiting for any, the last one a 1; the
    teacher draws meanwhile. Returns the runs the student's flood got (counted until its
    last drawing's prediction), that prediction, and the teacher's."""
    others = [digit for digit in wire.DIGIT_STROKES if digit != 1]
    async with wire.DrawVisitor(student_url, timeout=60) as student, \
            wire.DrawVisitor(teacher_url, timeout=60) as teacher:
        for i in range(FLOOD - 1):
            await student._send_canvas(others[i % len(others)])
            await asyncio.sleep(FLOOD_PACE)
        await student._send_canvas(1)
        teachers, _ = await teacher.draw(7)
        runs, last = 0, None
        while last != "1" and runs < FLOOD:
            last, _ = await student._until_finished()  # one run of the flood, finished
            runs += 1
        return runs, last, teachers


def test_a_students_flood_of_drawings_is_merged_into_a_few_runs_and_its_last_drawing_read(server):
    """Every run is the server's time: one student's script sending drawings in a loop
    took every other visitor's prediction from 0.01 s to 3-24 s. Now the runs an address
    asks for beyond its share wait, each replaced by the next: the teacher is served, the
    flood's drawings are merged into fewer runs, and its newest drawing, deferred rather than
    dropped, is read. How many runs the share holds (a burst, then a rate) is
    test_classroom's, on a fake clock; the edge's log says it merged them."""
    logged = len(server.log_path.read_text())
    with LoopbackRelay(server.port) as relay:
        runs, last, teachers = wire.run(flood(relay.url, server.url))
    assert teachers == "7"  # the teacher is never held back
    assert last == "1"  # the flood's newest drawing, not one of the merged ones
    assert runs < FLOOD  # counted: the drawings beyond the share were merged, not each run
    # ... and merged by the edge, which held them for their turn (Streamlit merges the reruns
    # of a busy script too, so the count alone could not say whose).
    assert "Merged into a newer one: a rerun waiting for its turn from ::ffff:127.0.0.2" in \
        server.log_path.read_text()[logged:]
    assert "Traceback" not in server.log_path.read_text()[logged:]
