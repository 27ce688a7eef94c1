"""The rules of the layout: mnist_core has no Streamlit; the server process has no TensorFlow;
pages are layout; modules are what their folder says; modules and functions stay small; the
run layout depends on no feature; the core opens no socket."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "pages").glob("*.py"))
SERVER_FILES = [REPO / "app.py", REPO / "home.py",
                *sorted((REPO / "serving").glob("*.py")), *PAGES]
# A page is the lesson it shows, read top to bottom: its parts are serving/*_ui functions.
MAX_PAGE_LINES = 150
CORE_FILES = sorted((REPO / "mnist_core").rglob("*.py"))
# The only modules that may import TensorFlow / Keras: they run in the worker process.
WORKER_SIDE = {REPO / "mnist_core/training" / name for name in (
    "fit.py", "snapshots.py", "augment.py", "live_metrics.py", "fused_adam.py",
    "fused_batch_norm.py")}
TENSORFLOW = {"tensorflow", "keras", "tf2onnx"}
PRODUCT_FILES = [*SERVER_FILES, *CORE_FILES]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Exceptions to the rules below, each with its reason (the lists only shrink): none today.
LONG_MODULES_ALLOWED: set[Path] = set()
LONG_FUNCTIONS_ALLOWED: set[tuple[str, str]] = set()
# The room's network (interfaces, routes) is serving.classroom's; none is read in mnist_core.
NETWORK_ALLOWED: set[Path] = set()
SOCKET_MODULES = {"socket", "socketserver", "ssl", "http", "urllib", "requests", "websockets",
                  "aiohttp"}
NETWORK_CALLS = {"net_if_addrs", "net_if_stats", "net_connections", "net_io_counters"}  # psutil


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_mnist_core_never_imports_streamlit():
    offenders = [p.name for p in CORE_FILES if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_only_the_worker_side_imports_tensorflow_or_keras():
    offenders = [str(p.relative_to(REPO)) for p in CORE_FILES
                 if p not in WORKER_SIDE and imported_modules(p) & TENSORFLOW]
    assert offenders == []


def test_app_and_pages_import_no_tensorflow_directly():
    offenders = [p.name for p in SERVER_FILES if imported_modules(p) & TENSORFLOW]
    assert offenders == []


def test_server_side_imports_load_no_tensorflow_or_keras():
    """Import every module the server may reach (all of serving and mnist_core but the worker
    side), in a fresh interpreter, and look at sys.modules."""
    modules = [module_name(p) for p in [*sorted((REPO / "serving").glob("*.py")), *CORE_FILES]
               if p not in WORKER_SIDE]
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        f"import {', '.join(modules)}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(bad[:5]); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mnist_core.training.worker" in modules  # its TensorFlow import waits for the lease


def test_no_class_is_defined_inside_a_function_and_no_import_hides_an_ordering_problem():
    for path in [*CORE_FILES, *SERVER_FILES]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n.name for n in ast.walk(node) if isinstance(n, ast.ClassDef)]
                assert inner == [], f"{path.name}: class {inner} inside {node.name}()"
        assert "noqa: E402" not in path.read_text(), path.name


def test_pages_build_no_stores_databases_or_trainers():
    """Shared objects come from serving.ui (created once per server), not from each page."""
    built = {"ModelStore", "DrawingStore", "Trainer", "TrainingLease", "Follower"}
    for path in [REPO / "home.py", *PAGES]:
        calls = {n.func.id for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert not calls & built, f"{path.name} builds {calls & built}"


def test_every_page_is_layout_of_at_most_150_lines():
    long = {str(p.relative_to(REPO)): lines for p in [REPO / "home.py", *PAGES]
            if (lines := len(p.read_text().splitlines())) > MAX_PAGE_LINES}
    assert long == {}


def test_pages_keep_no_session_bookkeeping_or_inline_style():
    """State machines, bookkeeping and HTML belong in serving/*_ui: a page neither writes
    session state by attribute or key (widgets own their keys; `setdefault` gives one its
    first value) nor holds a <style> or style= attribute."""
    for path in [REPO / "home.py", *PAGES]:
        tree = ast.parse(path.read_text())
        written = [ast.unparse(target) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign | ast.AugAssign)
                   for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                   if "session_state" in ast.unparse(target)]
        assert written == [], f"{path.name} writes {written}"
        assert "<style" not in path.read_text() and "style=" not in path.read_text(), path.name


def test_one_list_of_pages_names_every_page_file():
    """serving.navigation's list is the app's only list of pages: it names every page file,
    and the sidebar and Home draw from it."""
    from serving import navigation

    listed = sorted(entry.file for entry in navigation.PAGES)
    assert listed == sorted(str(p.relative_to(REPO)) for p in [REPO / "home.py", *PAGES])
    assert [e.file for e in navigation.PAGES if e.teacher_only] == ["pages/6_Join.py"]
    # Beside the main script, a pages/ folder would be run the older way, past the navigation.
    assert not (REPO / "serving" / "pages").exists()


def test_tests_import_nothing_from_benchmarks():
    """Benchmarks may use the tests' helpers (tests/e2e.py, tests/wire.py), never the reverse."""
    offenders = [p.name for p in sorted((REPO / "tests").glob("*.py"))
                 if "benchmarks" in imported_modules(p)]
    assert offenders == []


def test_no_product_module_is_over_400_lines():
    long = {p: len(p.read_text().splitlines()) for p in PRODUCT_FILES}
    offenders = sorted(str(p.relative_to(REPO)) for p, lines in long.items()
                       if lines > MAX_MODULE_LINES and p not in LONG_MODULES_ALLOWED)
    assert offenders == []
    shrunk = sorted(str(p.relative_to(REPO)) for p in LONG_MODULES_ALLOWED
                    if long.get(p, 0) <= MAX_MODULE_LINES)
    assert shrunk == [], "split already: take them off LONG_MODULES_ALLOWED"


def long_functions(path: Path) -> set[tuple[str, str]]:
    """(file, name) of the functions and methods of `path` over MAX_FUNCTION_LINES lines."""
    return {(str(path.relative_to(REPO)), node.name)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}


def test_no_product_function_is_over_60_lines():
    found = set().union(*(long_functions(p) for p in PRODUCT_FILES))
    assert sorted(found - LONG_FUNCTIONS_ALLOWED) == []
    assert sorted(LONG_FUNCTIONS_ALLOWED - found) == [], "split already: take them off the list"


def test_the_run_layout_imports_nothing_from_the_inside_feature():
    """runs/ names every file a run folder holds; inside/ reads them by those names."""
    offenders = {}
    for path in sorted((REPO / "mnist_core/runs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            inside = [n for n in names if n == "mnist_core.inside" or n.startswith("mnist_core.inside.")]
            if inside:
                offenders.setdefault(path.name, []).extend(inside)
    assert offenders == {}


def network_use(path: Path) -> set[str]:
    """The socket modules `path` imports and the psutil network calls it makes."""
    used = imported_modules(path) & SOCKET_MODULES
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in NETWORK_CALLS:
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "psutil":
            used.update(alias.name for alias in node.names if alias.name in NETWORK_CALLS)
    return used


def test_mnist_core_opens_no_socket_and_reads_no_network_interface():
    offenders = {str(p.relative_to(REPO)): sorted(used) for p in CORE_FILES
                 if p not in NETWORK_ALLOWED and (used := network_use(p))}
    assert offenders == {}
    assert all(network_use(p) for p in NETWORK_ALLOWED), "moved already: take it off the list"
