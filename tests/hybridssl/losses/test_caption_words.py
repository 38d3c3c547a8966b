"""Caption-word prediction against its formula: idf-weighted bag-of-words targets, KL(y ‖ softmax),
the running document frequencies, and one head shared by every tower."""

import math

import pytest
import torch
import torch.nn.functional as F

from hybridssl.losses.caption_words import CaptionWords, caption_word_losses, word_kl, word_targets

SPECIAL = [0, 1, 2]  # pad, bos/cls, eos


def test_targets_are_the_distinct_non_special_tokens_weighted_by_idf():
    ids = torch.tensor([[1, 5, 6, 5, 2, 0], [1, 7, 2, 0, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    y = word_targets(ids, attn, vocab_size=8, special_ids=SPECIAL)
    assert torch.allclose(y[0], torch.tensor([0, 0, 0, 0, 0, 0.5, 0.5, 0]))   # 5 counted once
    assert torch.allclose(y[1], torch.tensor([0, 0, 0, 0, 0, 0, 0, 1.0]))
    idf = torch.tensor([1.0, 1, 1, 1, 1, 3.0, 1.0, 1])
    y = word_targets(ids, attn, vocab_size=8, special_ids=SPECIAL, idf=idf)
    assert torch.allclose(y[0, 5:7], torch.tensor([0.75, 0.25]))
    empty = word_targets(torch.tensor([[1, 2, 0]]), torch.tensor([[1, 1, 0]], dtype=torch.bool), 8, SPECIAL)
    assert float(empty.sum()) == 0.0


def test_kl_matches_its_formula_and_is_zero_at_the_target():
    torch.manual_seed(0)
    logits = torch.randn(3, 6)
    y = torch.tensor([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # row 3: no words
    p = F.softmax(logits, -1)
    expected = sum(sum(float(y[i, v]) * math.log(float(y[i, v]) / float(p[i, v])) for v in range(6) if y[i, v] > 0)
                   for i in range(2)) / 2
    assert float(word_kl(logits, y)) == pytest.approx(expected, rel=1e-5)
    exact = torch.log(y[:2].clamp_min(1e-30))
    assert float(word_kl(exact, y[:2])) == pytest.approx(0.0, abs=1e-5)
    assert float(word_kl(logits, torch.zeros(3, 6))) == 0.0


def test_document_frequencies_count_training_captions_only():
    words = CaptionWords(embed_dim=4, vocab_size=8, special_ids=SPECIAL)
    ids = torch.tensor([[1, 5, 6, 2], [1, 5, 7, 2]])
    attn = torch.ones_like(ids, dtype=torch.bool)
    y = words.targets(ids, attn)
    assert words.n_docs.item() == 2 and words.doc_freq[5].item() == 2 and words.doc_freq[6].item() == 1
    # word 5 is in every caption: idf log(3/3) = 0, so each caption's mass is on its own word
    assert torch.allclose(y[0], F.one_hot(torch.tensor(6), 8).float())
    words.eval()
    words.targets(ids, attn)
    assert words.n_docs.item() == 2                      # evaluation counts nothing
    assert set(words.state_dict()) >= {"doc_freq", "n_docs"}  # checkpointed, so a resume continues them


def test_paraphrases_average_the_targets_of_an_items_captions():
    words = CaptionWords(embed_dim=4, vocab_size=10, special_ids=SPECIAL).eval()   # eval: idf log(1/1) = 0 ...
    words.n_docs.fill_(5.0)                                                          # ... so set N = 5, n_v = 0
    ids, attn = torch.tensor([[1, 5, 2], [1, 6, 2]]), torch.ones(2, 3, dtype=torch.bool)
    para = torch.tensor([[[1, 7, 2], [1, 8, 9]], [[1, 6, 2], [1, 6, 2]]])          # (B=2, K=2, L=3)
    y = words.targets(ids, attn, (para, torch.ones_like(para, dtype=torch.bool), torch.tensor([2, 0])))
    third = 1.0 / 3.0   # item 0: caption {5}, paraphrases {7}, {8, 9} → (e5 + e7 + (e8 + e9)/2) / 3
    assert torch.allclose(y[0], torch.tensor([0, 0, 0, 0, 0, third, 0, third, third / 2, third / 2]))
    assert torch.allclose(y[1], F.one_hot(torch.tensor(6), 10).float())   # count 0: its caption alone
    assert torch.allclose(y.sum(1), torch.ones(2))


def test_one_head_scores_every_modality_and_pairs_rows_by_item():
    torch.manual_seed(0)
    words = CaptionWords(embed_dim=4, vocab_size=8, special_ids=SPECIAL)
    batch = {"text_ids": torch.tensor([[1, 5, 2], [1, 6, 2]]), "text_attn": torch.ones(2, 3, dtype=torch.bool)}
    emb = {"image": torch.randn(3, 4, requires_grad=True), "text": torch.randn(2, 4)}
    rows = {"image": torch.tensor([0, 1, 2]), "text": torch.tensor([0, 2])}   # item 1 has no caption
    losses, counts = caption_word_losses(words, batch, emb, rows, weight=2.0)
    assert counts == {"words/image": 2, "words/text": 2}
    targets = word_targets(batch["text_ids"], batch["text_attn"], 8, SPECIAL,
                           idf=torch.log((1 + words.n_docs) / (1 + words.doc_freq)))
    cos = F.normalize(emb["image"][[0, 2]], dim=-1) @ F.normalize(words.words, dim=-1).T
    expected = 2.0 * word_kl(cos / words.temperature, targets)
    assert losses["words/image"].item() == pytest.approx(expected.item(), rel=1e-6)
    losses["words/image"].backward()
    assert emb["image"].grad[1].abs().sum() == 0 and emb["image"].grad[0].abs().sum() > 0
    assert caption_word_losses(words, {}, emb, rows, 1.0) == ({}, {})   # no captions: no term


def test_feature_heads_are_one_linear_classifier_per_tower():
    """on="features" (SuperClass): W_m f + b_m on the pooled features of the towers that have a head;
    the others keep the shared cosine head."""
    torch.manual_seed(0)
    words = CaptionWords(embed_dim=4, vocab_size=8, special_ids=SPECIAL, feature_dims={"image": 6})
    batch = {"text_ids": torch.tensor([[1, 5, 2], [1, 6, 2]]), "text_attn": torch.ones(2, 3, dtype=torch.bool)}
    feats = {"image": torch.randn(2, 6), "text": torch.randn(2, 4)}
    rows = {"image": torch.tensor([0, 1]), "text": torch.tensor([0, 1])}
    losses, _ = caption_word_losses(words, batch, feats, rows, weight=1.0)
    targets = word_targets(batch["text_ids"], batch["text_attn"], 8, SPECIAL,
                           idf=torch.log((1 + words.n_docs) / (1 + words.doc_freq)))
    head = words.feature_heads["image"]
    expected = word_kl(feats["image"] @ head.weight.T + head.bias, targets)
    assert losses["words/image"].item() == pytest.approx(expected.item(), rel=1e-6)
    cos = F.normalize(feats["text"], dim=-1) @ F.normalize(words.words, dim=-1).T
    assert losses["words/text"].item() == pytest.approx(word_kl(cos / words.temperature, targets).item(), rel=1e-6)
