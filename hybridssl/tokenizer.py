"""Text tokenizer: a WordPiece or BPE model trained with HuggingFace ``tokenizers`` on the
training captions, saved as ``tokenizer.json`` beside every checkpoint and bundle.

Encoding contract (also followed by ``edge_runtime``): ``[CLS] tokens… [SEP]`` truncated to
``max_length`` and right-padded with ``[PAD]`` (id 0); the attention mask is 1 on real tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, model: str = "bpe", lowercase: bool = True):
    """Train a tokenizer on ``texts``; returns a ``tokenizers.Tokenizer`` with the encoding contract.

    BPE (the default) trains reproducibly: the same captions give the same ``tokenizer.json``.
    WordPiece training in ``tokenizers`` picks merges in hash-map order on count ties (a known
    limitation upstream), so its vocabulary can differ between runs; we renumber it deterministically, but
    the vocabulary set itself may still vary. Use it only when matching an existing WordPiece setup.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer: trainers.Trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
        tok.decoder = decoders.WordPiece()
    elif model == "bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
        tok.decoder = decoders.BPEDecoder()
    else:
        raise ValueError(f"unknown tokenizer model {model!r}; use 'wordpiece' or 'bpe'")
    norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tok.normalizer = normalizers.Sequence(norm)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer: the dataset has no non-empty captions")
    tok.train_from_iterator(texts, trainer=trainer)
    if model == "wordpiece":
        tok.model = _sorted_wordpiece(tok)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return tok


def _sorted_wordpiece(tok):
    """The trainer's token ids depend on hash-map order (they change from run to run); WordPiece
    matching only depends on the vocabulary *set*, so renumber it deterministically: the special
    tokens first, then the rest sorted."""
    from tokenizers import models

    vocab = tok.get_vocab()
    rest = sorted(t for t in vocab if t not in SPECIAL_TOKENS)
    ordered = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *rest])}
    return models.WordPiece(vocab=ordered, unk_token="[UNK]", continuing_subword_prefix="##")


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer`` with fixed-length batch encoding."""

    def __init__(self, tokenizer, max_length: int) -> None:
        if max_length < 3:
            raise ValueError("max_length must be at least 3 ([CLS] token [SEP])")
        self.tok = tokenizer
        self.max_length = max_length
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]", length=max_length)

    @classmethod
    def from_file(cls, path: str | Path, max_length: int) -> "TextTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), max_length)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    def to_str(self) -> str:
        return self.tok.to_str()

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def token_id(self, token: str) -> int:
        i = self.tok.token_to_id(token)
        if i is None:
            raise KeyError(token)
        return i

    @property
    def pad_id(self) -> int:
        return self.tok.token_to_id("[PAD]")

    @property
    def mask_id(self) -> int:
        return self.tok.token_to_id("[MASK]")

    @property
    def special_ids(self) -> list[int]:
        return [self.tok.token_to_id(t) for t in SPECIAL_TOKENS]

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts → (ids (B, L) int64, attention (B, L) bool). Empty strings are refused."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single string")
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError("cannot encode an empty caption")
        enc = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        attn = np.array([e.attention_mask for e in enc], dtype=bool)
        return ids, attn
