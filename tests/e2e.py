"""Running the real app and driving it from headless Chromium (tests and the load benchmark)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

# Strokes of a few digits on the 280x280 canvas, as (x, y) points.
DIGIT_STROKES = {
    7: [[(80, 60), (200, 60), (190, 100), (160, 160), (130, 230)]],
    1: [[(150, 40), (150, 240)]],
    0: [[(140, 50), (90, 90), (80, 150), (100, 210), (140, 235), (185, 205), (200, 145),
         (185, 85), (140, 50)]],
    4: [[(160, 40), (80, 160), (210, 160)], [(170, 100), (170, 240)]],
}


# Nothing a test starts reaches outside this machine: Streamlit looks up the machine's
# external address on some handshakes, and it goes to a closed loopback port instead.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "localhost,127.0.0.1,::1"}


def wait_for_health(url: str, timeout: float = 60) -> bool:
    """Whether the app at `url` answers its health check within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.3)
    return False


class AppServer:
    """`streamlit run app.py` with its own models folder; with `launcher` (or `processes` >
    1), `python -m serving.launch` (what `./run app` starts) with that many processes. The
    server picks a free port itself and says which (a port the test picked could be taken
    before the server binds it)."""

    PORT_SAID = {"streamlit": re.compile(r"Local URL: http://localhost:(\d+)"),
                 "launcher": re.compile(r"served on port (\d+)")}

    def __init__(self, models_dir: Path, log_path: Path, env: dict | None = None,
                 processes: int = 1, launcher: bool = False, options: tuple[str, ...] = ()):
        self.models_dir = Path(models_dir)
        self.log_path = Path(log_path)
        self.env = env or {}
        self.processes = processes
        self.launcher = launcher or processes > 1
        self.options = options
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> AppServer:
        log = open(self.log_path, "a")
        said_from = self.log_path.stat().st_size
        command = ([sys.executable, "-m", "serving.launch", "--processes", str(self.processes)]
                   if self.launcher else [sys.executable, "-m", "streamlit", "run", "app.py"])
        self.process = subprocess.Popen(
            [*command, "--server.headless", "true", "--server.port", "0",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             *self.options],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **OFFLINE, "MNIST_MODELS_DIR": str(self.models_dir), **self.env},
        )
        self.port = self._port_said(said_from, timeout)
        self.url = f"http://127.0.0.1:{self.port}"
        if not wait_for_health(self.url, timeout):
            raise RuntimeError("the app did not start:\n" + self.log_path.read_text())
        return self

    def _port_said(self, said_from: int, timeout: float) -> int:
        pattern = self.PORT_SAID["launcher" if self.launcher else "streamlit"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path, errors="replace") as log:
                log.seek(said_from)
                found = pattern.search(log.read())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the app did not say its port:\n" + self.log_path.read_text())

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss_mb(self) -> float:
        """Resident memory of the server: all its processes (not a training worker)."""
        return sum(rss_mb(pid) for pid in descendants(self.process.pid)
                   if "mnist_core.training" not in command_line(pid))

    def server_pids(self) -> list[int]:
        """The processes answering visitors: the one, or the launcher's children in the order
        of their sockets (process k answers the addresses the port's filter gives to k)."""
        if self.processes == 1:
            return [self.process.pid]
        children = {}
        for pid in descendants(self.process.pid):
            words = command_line(pid).split()
            if "--child" in words:
                children[int(words[words.index("--child") + 2])] = pid
        return [children[index] for index in sorted(children)]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # ended meanwhile
        pass
    return 0.0


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def worker_processes(models_dir: Path) -> list[int]:
    """Training worker processes of this models folder now running. Zombies do not count,
    nor does a worker's own short-lived child (a fork before an exec shows its parent's
    command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            line = command_line(int(entry.name))
            if "mnist_core.training.worker" in line and str(models_dir) in line:
                try:
                    state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                except OSError:
                    continue
                if state != "Z":
                    found[int(entry.name)] = int(parent)
    return [pid for pid, parent in found.items() if parent not in found]


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)


def new_page(browser, width: int = 1300, height: int = 1200):
    """A page in its own context (a visitor of its own) that records page errors."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


def open_page(page, url: str, timeout: float = 30000) -> None:
    """Go to `url` and wait until the script has run once."""
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    wait_until_idle(page, timeout)


def wait_until_idle(page, timeout: float = 60000) -> None:
    """Until the page is connected and its script is not running (Streamlit's status
    widget says neither "Running" nor "Connecting")."""
    page.wait_for_function(
        "!(document.querySelector('[data-testid=\"stStatusWidget\"]')?.innerText ?? '')"
        ".match(/Running|Connecting/)", timeout=timeout)


def draw(page, digit: int = 7) -> float:
    """Draw a digit on the Draw page's canvas with the mouse; return the mouse-up time."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    for stroke in DIGIT_STROKES[digit]:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
        page.mouse.up()
    return time.perf_counter()


def draw_by_touch(page, digit: int = 7, steps: int = 6) -> None:
    """Draw on the canvas with touch events, as a finger on a phone does."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    cdp = page.context.new_cdp_session(page)

    def at(x, y):
        return {"x": box["x"] + x * box["width"] / 280, "y": box["y"] + y * box["height"] / 280}

    for stroke in DIGIT_STROKES[digit]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [at(*stroke[0])]})
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:], strict=True):
            for k in range(1, steps + 1):  # a finger moves smoothly, not in jumps
                point = at(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps)
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def app_button(page, name: str):
    """A button of the app itself, not of Streamlit's toolbar (which shows "Stop" while a
    script runs)."""
    return page.get_by_test_id("stMainBlockContainer").get_by_role("button", name=name)


def start_training(page, url: str, epochs_key: str = "End") -> None:
    """Open Train, set the epochs slider (End = 50 epochs, a long run) and press Start."""
    open_page(page, f"{url}/Train")
    slider = page.locator('[data-testid="stSlider"]', has_text="Epochs").get_by_role("slider")
    slider.focus()
    page.keyboard.press(epochs_key)
    app_button(page, "Start training").click()


def prediction(page):
    return page.locator('[data-testid="stMetric"]', has_text="Prediction")


def final_prediction(page, expected: str, timeout: float = 60) -> str:
    """The Prediction once it shows `expected`, or the last one shown when the deadline
    passes. A digit of several strokes may be sent stroke by stroke (the canvas sends 0.2 s
    after a mouse-up), so an earlier Prediction can be of the first stroke alone."""
    value = prediction(page).locator('[data-testid="stMetricValue"]')
    value.wait_for(timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    shown = value.inner_text().strip()
    while shown != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        shown = value.inner_text().strip() if value.count() else shown
    return shown


def clear_canvas(page) -> None:
    page.get_by_role("button", name="Reset canvas & history").click()
