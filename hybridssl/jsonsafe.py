"""``json_safe(x)``: a nested result made strictly JSON-serialisable.

Mappings → dicts with string keys; lists/tuples/sets → lists; numpy arrays → nested lists; numpy
integers → int; floats (numpy included) → float, with NaN/±inf → null (strict JSON has no NaN);
:class:`pathlib.Path` → str; 0-d tensors/arrays (anything with ``.item()``) → their scalar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item"):
        return json_safe(x.item())
    return x
