"""The two rules of the layout: mnist_core has no Streamlit; the server process has no TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_FILES = [REPO / "app.py", *sorted((REPO / "serving").glob("*.py")), *sorted((REPO / "pages").glob("*.py"))]
CORE_FILES = sorted((REPO / "mnist_core").glob("*.py"))
WORKER_SIDE = {"worker.py"}  # the only module that may import TensorFlow / Keras


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pages_are_where_the_product_says():
    assert [p.name for p in SERVER_FILES[2:]] == [
        "1_Explore.py", "2_Train.py", "3_Draw.py", "4_Class_drawings.py"]


def test_mnist_core_never_imports_streamlit():
    offenders = [p.name for p in CORE_FILES if "streamlit" in imported_modules(p)]
    assert offenders == []


def test_only_the_worker_imports_tensorflow_or_keras():
    offenders = [
        p.name for p in CORE_FILES
        if p.name not in WORKER_SIDE and imported_modules(p) & {"tensorflow", "keras", "tf2onnx"}
    ]
    assert offenders == []


def test_app_and_pages_import_no_tensorflow_directly():
    offenders = [p.name for p in SERVER_FILES if imported_modules(p) & {"tensorflow", "keras"}]
    assert offenders == []


def test_server_side_imports_load_no_tensorflow_or_keras():
    """Import everything the pages import, in a fresh interpreter, and look at sys.modules."""
    modules = set()
    for path in SERVER_FILES:
        modules |= {m for m in imported_modules(path) if m in ("ui", "mnist_core")}
    core = [f"mnist_core.{p.stem}" for p in CORE_FILES
            if p.name not in WORKER_SIDE and p.stem != "__init__"]
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        f"import ui, {', '.join(core)}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(bad[:5]); sys.exit(1 if bad else 0)\n"
    )
    assert modules == {"ui", "mnist_core"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
