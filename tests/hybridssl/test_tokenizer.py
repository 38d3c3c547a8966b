import numpy as np
import pytest

from hybridssl.tokenizer import TextTokenizer, train_tokenizer

CAPTIONS = ["a big red circle on the left", "a small blue square in the middle", "striped green star at the top"] * 30


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
def test_train_save_load_encode(tmp_path, model):
    tok = TextTokenizer(train_tokenizer(CAPTIONS, vocab_size=120, model=model), max_length=10)
    ids, attn = tok.encode(["a big blue star", "a big red circle on the left in the middle of the picture"])
    assert ids.shape == (2, 10) and ids.dtype == np.int64 and attn.dtype == bool
    assert ids[0, 0] == tok.token_id("[CLS]") and tok.token_id("[SEP]") in ids[0]
    assert attn[1].all()  # truncated to max_length
    assert (ids[0][~attn[0]] == tok.pad_id).all()
    tok.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.from_file(tmp_path / "tokenizer.json", max_length=10)
    assert (again.encode(["a big blue star"])[0] == ids[:1]).all()


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="no non-empty captions"):
        train_tokenizer(["", "  "])
    tok = TextTokenizer(train_tokenizer(CAPTIONS, vocab_size=100), max_length=8)
    with pytest.raises(ValueError, match="empty caption"):
        tok.encode(["fine", "   "])
    with pytest.raises(TypeError):
        tok.encode("not a list")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        train_tokenizer(CAPTIONS, model="sentencepiece")


def test_bpe_training_is_deterministic():
    texts = [f"a {c} {s} on the {p}" for c in ("red", "blue", "green") for s in ("circle", "star") for p in ("left", "top")]
    a = TextTokenizer(train_tokenizer(texts * 3, vocab_size=200), 12)
    b = TextTokenizer(train_tokenizer(texts * 3, vocab_size=200), 12)
    assert a.to_str() == b.to_str()
    assert a.token_id("[PAD]") == 0 and a.token_id("[MASK]") == 4


def test_wordpiece_ids_are_renumbered_in_order():
    tok = TextTokenizer(train_tokenizer(CAPTIONS, vocab_size=120, model="wordpiece"), 8)
    vocab = sorted(tok.tok.get_vocab().items(), key=lambda kv: kv[1])
    names = [t for t, _ in vocab]
    assert names[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and names[5:] == sorted(names[5:])
