"""Vocabulary and caption grammar of the procedurally generated scenes (:mod:`hybridssl.data.synthetic`).

A scene is one main object with five independent attributes (:data:`ATTRIBUTES`). Its caption is
``TEMPLATES[t]`` filled with one synonym per attribute (:data:`SYNONYMS`; texture has an adjective form
``"striped"`` and a prepositional form ``"with stripes"``), then ``"a"`` → ``"an"`` before a vowel.
Every template mentions all five attributes, and no synonym of one value occurs (as whole words) in
another value's synonyms or in the templates' fixed words, so :func:`parse_caption` recovers the scene
exactly from any generated caption.

The choices are driven by six numbers ``u ∈ [0, 1)`` (template, then one per attribute in
:data:`ATTRIBUTES` order): choice ``k = ⌊u · n⌋`` among ``n`` options — a fixed number of draws, so
the caller's random stream does not depend on which template was picked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "heart"),
    "colour": ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"),
    "size": ("small", "large"),
    "position": ("left", "right", "top", "bottom", "centre"),
    "texture": ("solid", "striped", "dotted"),
}

SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {
        "circle": ("circle", "disc", "round shape"),
        "square": ("square", "block"),
        "triangle": ("triangle", "three-sided shape"),
        "star": ("star", "five-pointed star", "pentagram"),
        "cross": ("cross", "plus sign"),
        "diamond": ("diamond", "rhombus", "lozenge"),
        "hexagon": ("hexagon", "six-sided shape"),
        "heart": ("heart", "love heart"),
    },
    "colour": {
        "red": ("red", "crimson", "scarlet"),
        "orange": ("orange", "tangerine"),
        "yellow": ("yellow", "golden", "lemon"),
        "green": ("green", "emerald"),
        "cyan": ("cyan", "turquoise", "aqua"),
        "blue": ("blue", "cobalt", "sapphire"),
        "purple": ("purple", "violet"),
        "pink": ("pink", "rose"),
    },
    "size": {
        "small": ("small", "little", "tiny"),
        "large": ("large", "big", "huge"),
    },
    "position": {
        "left": ("on the left", "on the left side", "to the left"),
        "right": ("on the right", "on the right side", "to the right"),
        "top": ("at the top", "near the top", "in the upper part"),
        "bottom": ("at the bottom", "near the bottom", "in the lower part"),
        "centre": ("in the centre", "in the middle", "in the center"),
    },
}

#: texture as an adjective before the noun / as a phrase after it; both count for parsing.
TEXTURE_ADJ: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "filled"),
    "striped": ("striped", "stripy", "banded"),
    "dotted": ("dotted", "spotted", "polka-dot"),
}
TEXTURE_WITH: dict[str, tuple[str, ...]] = {
    "solid": ("with no pattern", "without any pattern"),
    "striped": ("with stripes", "with bands"),
    "dotted": ("with dots", "with spots", "with polka dots"),
}
SYNONYMS["texture"] = {v: TEXTURE_ADJ[v] + TEXTURE_WITH[v] for v in ATTRIBUTES["texture"]}

#: placeholders: size, colour, shape, pos, tex (adjective form) or tex_with (phrase form).
TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {tex} {shape} {pos}",
    "{pos} there is a {size} {colour} {shape} {tex_with}",
    "{pos}: {tex} {colour} {shape}, {size}",
    "a {shape} {pos}, {size}, {colour} and {tex}",
    "a picture of a {tex} {shape} that is {size} and {colour}, {pos}",
    "{size} {shape} {tex_with}, coloured {colour}, {pos}",
    "we see a {colour} {shape} {pos}; it is {size} and {tex}",
    "{pos}, a {size} {tex} {shape} in {colour}",
)

#: zero-shot prompts per label attribute: ``(form, templates)``; they mention only that attribute.
PROMPT_TEMPLATES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "shape": (("word", ("a {w}", "a picture of a {w}", "a drawing of a {w}")),),
    "colour": (("word", ("something {w}", "a {w} object", "a picture of something {w}")),),
    "size": (("word", ("a {w} object", "something {w}")),),
    "position": (("word", ("an object {w}", "something {w}")),),
    "texture": (("adj", ("a {w} object", "something {w}")), ("with", ("an object {w}",))),
}

N_CAPTION_DRAWS = 1 + len(ATTRIBUTES)  # template + one synonym choice per attribute

_ARTICLE_RE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")


def fix_articles(text: str) -> str:
    """``"a orange"`` → ``"an orange"`` (every template ``a`` is an article)."""
    return _ARTICLE_RE.sub(r"\1n ", text)


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def make_caption(values: Mapping[str, str], u: Sequence[float] | np.ndarray) -> str:
    """The caption of a scene ``values`` (attribute → value) from ``N_CAPTION_DRAWS`` uniforms ``u``."""
    if len(u) != N_CAPTION_DRAWS:
        raise ValueError(f"make_caption needs {N_CAPTION_DRAWS} uniforms, got {len(u)}")
    template = _pick(TEMPLATES, u[0])
    fill = {
        "shape": _pick(SYNONYMS["shape"][values["shape"]], u[1]),
        "colour": _pick(SYNONYMS["colour"][values["colour"]], u[2]),
        "size": _pick(SYNONYMS["size"][values["size"]], u[3]),
        "pos": _pick(SYNONYMS["position"][values["position"]], u[4]),
        "tex": _pick(TEXTURE_ADJ[values["texture"]], u[5]),
        "tex_with": _pick(TEXTURE_WITH[values["texture"]], u[5]),
    }
    return fix_articles(template.format(**fill))


def _phrase_regex(phrases: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


_VALUE_RES: dict[str, dict[str, re.Pattern[str]]] = {
    attr: {value: _phrase_regex(words) for value, words in table.items()} for attr, table in SYNONYMS.items()
}


def parse_caption(text: str) -> dict[str, str | None]:
    """Attribute → the one value whose synonyms occur in ``text`` as whole words; ``None`` when no value
    or more than one value is mentioned (ambiguous)."""
    if not isinstance(text, str):
        raise ValueError(f"parse_caption expects a str, got {type(text).__name__}")
    out: dict[str, str | None] = {}
    for attr, patterns in _VALUE_RES.items():
        found = [value for value, pattern in patterns.items() if pattern.search(text)]
        out[attr] = found[0] if len(found) == 1 else None
    return out


def class_prompts(attribute: str) -> dict[str, list[str]]:
    """Zero-shot prompts for every value of ``attribute``, built from the caption vocabulary only."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; valid: {tuple(ATTRIBUTES)}")
    prompts: dict[str, list[str]] = {}
    for value in ATTRIBUTES[attribute]:
        out: list[str] = []
        for form, templates in PROMPT_TEMPLATES[attribute]:
            words = {"adj": TEXTURE_ADJ, "with": TEXTURE_WITH}.get(form, SYNONYMS[attribute])[value]
            out.extend(fix_articles(t.format(w=w)) for w in words for t in templates)
        prompts[value] = list(dict.fromkeys(out))
    return prompts
