"""The modalities hssl knows and how they are named and ordered (torch-free, the lowest layer).

The fixed ones are ``image``, ``text``, ``audio``; every stream of precomputed features or sensor
channels gets its own tower ``seq_<stream>`` (an identifier). Tables, bundles and reports list them in
the house order: the fixed ones first, then the sequence towers by name.
"""

from __future__ import annotations

from typing import Any

#: The fixed modalities, in the order every table, bundle and report lists them.
MODALITIES = ("image", "text", "audio")
#: A feature-sequence tower (one per stream of precomputed features or sensor channels) is called
#: ``SEQUENCE_PREFIX + stream`` — ``seq_sensor``, ``seq_acoustic`` — and listed after the fixed ones.
SEQUENCE_PREFIX = "seq_"
#: The dynamic time axis of a sequence tower's inputs (beside ``"batch"``).
TIME = "time"


def sequence_modality(stream: str) -> str:
    """The tower name of feature stream ``stream`` (``"sensor"`` → ``"seq_sensor"``)."""
    return SEQUENCE_PREFIX + stream


def is_sequence(modality: Any) -> bool:
    """Whether ``modality`` names a feature-sequence tower (``seq_<identifier>``, at most 64 characters)."""
    return (isinstance(modality, str) and modality.startswith(SEQUENCE_PREFIX) and len(modality) <= 64
            and modality[len(SEQUENCE_PREFIX):].isidentifier())


def sequence_stream(modality: str) -> str:
    """``"seq_sensor"`` → ``"sensor"`` (ValueError for a name that is not a sequence tower)."""
    if not is_sequence(modality):
        raise ValueError(f"{modality!r} is not a feature-sequence modality (seq_<name>)")
    return modality[len(SEQUENCE_PREFIX):]


def modality_kind(modality: str) -> str:
    """What serves ``modality`` where towers are keyed by kind (input dtypes, the student registry):
    itself, or ``"sequence"`` for every ``seq_<stream>`` tower."""
    return "sequence" if is_sequence(modality) else modality


def is_modality(modality: Any) -> bool:
    return modality in MODALITIES or is_sequence(modality)


def ordered_modalities(modalities: Any) -> tuple[str, ...]:
    """The known modalities among ``modalities``, in the house order: image, text, audio, then the
    sequence towers by name (duplicates and unknown names dropped)."""
    given = set(modalities)
    return tuple(m for m in MODALITIES if m in given) + tuple(sorted(m for m in given if is_sequence(m)))


def check_modalities(modalities: Any, what: str = "modalities") -> tuple[str, ...]:
    """``modalities`` in house order; ValueError naming the unknown ones."""
    bad = [m for m in modalities if not is_modality(m)]
    if bad:
        raise ValueError(f"{what}: unknown modalities {bad}; valid: {', '.join(MODALITIES)} or {SEQUENCE_PREFIX}<stream>")
    return ordered_modalities(modalities)
