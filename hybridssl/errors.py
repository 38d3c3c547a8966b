"""Errors the training side raises that the (torch-free) CLI front end must recognise.

Kept free of torch so that ``hssl embed`` & co. start on a runtime-only install."""


class NonFiniteLossError(RuntimeError):
    """Raised when more than ``max_bad_steps`` steps produced a NaN/inf loss or gradient."""
