"""Run code in a fresh interpreter with some packages made unimportable (as if not installed)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def blocker(*names: str) -> str:
    """Source that makes the packages ``names`` unimportable (as if not installed) in a fresh interpreter."""
    return f"""
import sys
BLOCKED = {set(names)!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""
