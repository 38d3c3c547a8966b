"""The import graph of hssl's packages, from the source (no imports executed).

    python scripts/import_graph.py            # package → packages it imports, and layer violations
    python scripts/import_graph.py --modules  # every module → the project modules it imports

Counts module-level and in-function imports alike. The layering rules it checks are those of
docs/architecture.md (also held by tests/test_architecture.py).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "hybridssl", "distill", "export", "cli")
#: package → the packages it may import (docs/architecture.md)
ALLOWED = {"edge_runtime": set(), "hybridssl": {"edge_runtime"}, "distill": {"hybridssl", "edge_runtime"},
           "export": {"hybridssl", "distill", "edge_runtime"}, "cli": set(PACKAGES) - {"cli"}}
#: orchestration (jobs that write run folders, reports, bundles): the library never imports it
APP = ("hybridssl.app", "distill.api", "distill.report", "export.api")


def is_app(module: str) -> bool:
    return any(module == a or module.startswith(a + ".") for a in APP)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in g.items():
        pkg = mod.split(".")[0]
        for dep in deps:
            other = dep.split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{mod} imports {dep} ({pkg} may import {sorted(ALLOWED[pkg]) or 'nothing of hssl'})")
            if is_app(dep) and not is_app(mod) and pkg != "cli":
                bad.append(f"{mod} (library) imports the orchestration module {dep}")
    return sorted(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", action="store_true")
    args = ap.parse_args()
    g = graph()
    if args.modules:
        for mod, deps in g.items():
            print(f"{mod} -> {', '.join(sorted(deps)) or '-'}")
    else:
        pk: dict[str, set[str]] = defaultdict(set)
        for mod, deps in g.items():
            pk[mod.split(".")[0]].update(d.split(".")[0] for d in deps if d.split(".")[0] != mod.split(".")[0])
        for p in PACKAGES:
            print(f"{p:13s} -> {', '.join(sorted(pk[p])) or '(nothing of hssl)'}")
    bad = violations(g)
    for line in bad:
        print("violation:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
