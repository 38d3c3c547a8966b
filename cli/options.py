"""Parsing of the comma-separated options of every command (``--modalities image,text``,
``--batch 1,8``...), once. Errors are ValueErrors naming the option; the CLI prints them in one line."""

from __future__ import annotations


def parse_list(text: str | None, option: str, *, required: bool = False, unique: bool = True) -> tuple[str, ...]:
    """``"image, text"`` → ("image", "text"); None or blank → () (a ValueError when ``required``);
    with ``unique`` a repeated item is a ValueError."""
    items = tuple(t.strip() for t in (text or "").split(",") if t.strip())
    if required and not items:
        raise ValueError(f"{option}: expected a comma-separated list, got {text!r}")
    if unique and len(set(items)) != len(items):
        raise ValueError(f"{option}: {text!r} repeats an item")
    return items


def parse_positive_ints(text: str | None, option: str) -> tuple[int, ...]:
    """``"1,8"`` → (1, 8); every item a whole number ≥ 1."""
    items = parse_list(text, option, required=text is not None)
    if not all(i.isdigit() and int(i) >= 1 for i in items):
        raise ValueError(f"{option}: expected comma-separated positive integers such as 1 or 1,8; got {text!r}")
    return tuple(int(i) for i in items)


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """``"0.01,0.1"`` → (0.01, 0.1) (repeats kept; the caller judges the values)."""
    values = []
    for t in parse_list(text, option, unique=False):
        try:
            values.append(float(t))
        except ValueError:
            raise ValueError(f"{option}: {t!r} is not a number") from None
    return tuple(values)


def log_override(trackers: list[str] | None) -> list[str]:
    """``--log tensorboard --log mlflow`` → ``["train.log=tensorboard,mlflow"]`` (none: no override, so
    ``train.log`` of the config stands)."""
    return [f"train.log={','.join(trackers)}"] if trackers else []
