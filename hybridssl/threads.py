"""``torch_threads(n)``: run a block with ``n`` torch intra-op threads, restoring the previous count.

``n`` = 0 (or None) leaves torch's setting alone. Every library entry point that takes
``threads`` (training, evaluation, distillation, export) uses it, so a call never changes the
caller's thread count after it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if isinstance(n, bool) or (n is not None and (not isinstance(n, int) or n < 0)):
        raise ValueError(f"threads must be an integer >= 0, got {n!r}")
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
