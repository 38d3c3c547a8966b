"""The layering of docs/architecture.md, checked on the source: which package may import which,
and that no library module imports orchestration (hybridssl.app, distill.api/report, export.api)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)


def test_no_layer_violation():
    assert import_graph.violations(import_graph.graph()) == []


def test_the_check_sees_a_violation():
    g = {"hybridssl.evaluation.lowlabel": {"hybridssl.app.train"}, "edge_runtime.model": {"hybridssl.runs"}}
    found = import_graph.violations(g)
    assert len(found) == 2 and "orchestration" in found[1] and "edge_runtime" in found[0]


def test_no_library_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in import_graph.PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
