"""The rules of the layout: mnist_core has no Streamlit; the server process has no TensorFlow;
pages are layout; modules are what their folder says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "pages").glob("*.py"))
SERVER_FILES = [REPO / "app.py", REPO / "home.py", *sorted((REPO / "serving").glob("*.py")), *PAGES]
CORE_FILES = sorted((REPO / "mnist_core").rglob("*.py"))
# The only modules that may import TensorFlow / Keras: they run in the worker process.
WORKER_SIDE = {REPO / "mnist_core/training/fit.py", REPO / "mnist_core/training/snapshots.py"}
TENSORFLOW = {"tensorflow", "keras", "tf2onnx"}


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


def test_tests_import_nothing_from_benchmarks():
    """Benchmarks may use the tests' helpers (tests/e2e.py, tests/wire.py), never the reverse."""
    offenders = [p.name for p in sorted((REPO / "tests").glob("*.py"))
                 if "benchmarks" in imported_modules(p)]
    assert offenders == []
