"""Word-replacement caption negatives: one word replaced by a word of another caption it lacks,
deterministic per batch, and wired into the InfoNCE denominators of the directions that score text."""

import torch

from hybridssl.data.caption_negatives import caption_negatives, replace_one_word
from hybridssl.losses.hard_negatives import add_caption_negatives


def test_one_word_replaced_by_a_word_the_caption_lacks():
    caps = ["a small red circle", "a large blue square", "a small green star"]
    negs = caption_negatives(caps, 3)
    assert len(negs) == 3 and all(len(n) == 3 for n in negs)
    for c, per in zip(caps, negs):
        for n in per:
            a, b = c.split(), n.split()
            diff = [i for i in range(len(a)) if a[i] != b[i]]
            assert len(b) == len(a) and len(diff) == 1          # exactly one word changed
            assert b[diff[0]] not in a                           # to a word the caption lacks
            others = {w for o in caps if o != c for w in o.split()}
            assert b[diff[0]] in others                          # drawn from the other captions
    assert caption_negatives(caps, 3) == negs                    # the same batch → the same negatives


def test_nothing_to_replace_with_keeps_the_caption():
    import numpy as np

    assert replace_one_word("a red circle", ["a", "red"], np.random.default_rng(0)) == "a red circle"
    assert caption_negatives(["only caption"], 2) == [["only caption", "only caption"]]


def test_negatives_join_the_directions_that_score_captions():
    neg = torch.arange(3 * 2 * 4, dtype=torch.float32).view(3, 2, 4)       # 3 text rows, S = 2, E = 4
    text_items = torch.tensor([0, 2, 5])                                   # batch items carrying text
    kw = {}
    add_caption_negatives(kw, "image", "text", torch.tensor([5, 0]), text_items, neg)
    assert list(kw) == ["extra_negatives_ab"] and torch.equal(kw["extra_negatives_ab"], neg[[2, 0]])
    kw = {"extra_negatives_ba": torch.zeros(1, 1, 4)}
    add_caption_negatives(kw, "text", "audio", torch.tensor([2]), text_items, neg)
    assert kw["extra_negatives_ba"].shape == (1, 3, 4)                     # appended to MoCHi's mixes
    assert torch.equal(kw["extra_negatives_ba"][0, 1:], neg[1])


def test_a_run_with_caption_negatives_trains_and_scores_more_candidates(tmp_path):
    """Same seed, same batches: the word-replaced negatives only add candidates to the text-scoring
    denominators, so the first step's image-text InfoNCE is larger with them, and training stays finite."""
    from hybridssl.config import load_config
    from hybridssl.data.splits import build_datasets
    from hybridssl.runs import build_model
    from hybridssl.tokenizer import TextTokenizer, train_tokenizer
    from hybridssl.trainer import Trainer

    losses = {}
    for n in (0, 2):
        cfg = load_config("tiny", ["data.train_size=32", "train.batch_size=8", "train.steps=2", "train.threads=1",
                                   "train.ckpt_every=0", f"loss.caption_negatives={n}"])
        train_set, _ = build_datasets(cfg.data, cfg.train.seed, None)
        ts = cfg.preprocess.text
        tok = TextTokenizer(train_tokenizer(train_set.captions(), ts.vocab_size, ts.model, ts.lowercase), ts.max_length)
        torch.manual_seed(0)
        trainer = Trainer(cfg, tmp_path / str(n), train_set, tok, build_model(cfg, tok.vocab_size, train_set.modalities))
        batch = trainer.to_device(next(iter(trainer.loader())))
        assert ("text_neg_ids" in batch) == (n > 0)
        if n:
            assert batch["text_neg_ids"].shape[0] == 2 * batch["text_ids"].shape[0]
        out = trainer.task(batch, 0, torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss)
        losses[n] = out.parts["contrastive/image-text"]
    assert losses[2] > losses[0]
