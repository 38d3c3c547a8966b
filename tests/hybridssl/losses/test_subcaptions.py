"""Sub-caption contrast against its formula: the spans are contiguous runs of at most K content tokens
framed by the caption's own [CLS]/[SEP], seeded, trimmed; the loss is InfoNCE against the spans with
equal spans as positives."""

import pytest
import torch

from hybridssl.losses.infonce import info_nce
from hybridssl.losses.positives import duplicate_captions
from hybridssl.losses.subcaptions import sample_spans, span_keys, subcaption_losses

PAD, CLS, SEP = 0, 1, 2
SPECIAL = [PAD, CLS, SEP, 3]  # 3: [MASK]


def _captions():
    ids = torch.tensor([[CLS, 10, 11, 12, 13, 14, SEP, PAD],
                        [CLS, 20, SEP, PAD, PAD, PAD, PAD, PAD],
                        [CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD],          # no content token
                        [CLS, 30, 31, 32, 33, 34, 35, SEP]])
    return ids, ids != PAD


@pytest.mark.parametrize("k", [1, 2, 3])
def test_spans_are_contiguous_runs_of_at_most_k_content_tokens(k):
    ids, attn = _captions()
    for seed in range(20):
        spans, sattn = sample_spans(ids, attn, SPECIAL, PAD, k, torch.Generator().manual_seed(seed))
        assert spans.shape == sattn.shape and spans.shape[1] <= k + 2
        for i in range(ids.shape[0]):
            row = spans[i][sattn[i]].tolist()
            assert row[0] == CLS and row[-1] == SEP
            inner = row[1:-1]
            content = [t for t in ids[i][attn[i]].tolist() if t not in SPECIAL]
            assert len(inner) <= k and (len(inner) >= 1 or not content)
            starts = [s for s in range(len(content)) if content[s:s + len(inner)] == inner]
            assert starts or not inner, (inner, content)                   # a contiguous run of the caption
            assert (spans[i][~sattn[i]] == PAD).all()


def test_spans_are_seeded_and_cover_every_length_and_start():
    ids, attn = _captions()
    a = sample_spans(ids, attn, SPECIAL, PAD, 3, torch.Generator().manual_seed(7))
    b = sample_spans(ids, attn, SPECIAL, PAD, 3, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    seen = set()
    for seed in range(300):
        spans, sattn = sample_spans(ids[:1], attn[:1], SPECIAL, PAD, 3, torch.Generator().manual_seed(seed))
        seen.add(tuple(spans[0][sattn[0]].tolist()[1:-1]))
    # every run of 1..3 of the 5 content tokens: 5 + 4 + 3
    assert len(seen) == 12


def test_a_span_length_below_one_is_refused():
    ids, attn = _captions()
    with pytest.raises(ValueError, match="subcaption_tokens"):
        sample_spans(ids, attn, SPECIAL, PAD, 0)


def test_loss_is_infonce_against_the_spans_with_equal_spans_as_positives():
    torch.manual_seed(0)
    spans = torch.tensor([[CLS, 10, SEP], [CLS, 20, SEP], [CLS, 10, SEP], [CLS, 30, SEP]])
    sattn = torch.ones_like(spans, dtype=torch.bool)
    keys = span_keys(spans, sattn)
    assert keys[0] == keys[2] != keys[1]
    image = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)      # items 0, 2, 3 have an image
    text_e = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)     # span embeddings, items 0..3
    scale = torch.tensor(10.0)
    rows = {"image": torch.tensor([0, 2, 3]), "text": torch.tensor([0, 1, 2, 3])}
    losses, counts = subcaption_losses(text_e, keys, {"image": image, "text": text_e}, rows, scale, 0.5)
    assert set(losses) == {"subcaption/image"} and counts == {"subcaption/image": 3}
    expected = info_nce(image, text_e[[0, 2, 3]], scale, positive_mask=duplicate_captions([keys[0], keys[2], keys[3]]))
    assert float(losses["subcaption/image"]) == pytest.approx(0.5 * float(expected), rel=1e-6)
    # items 0 and 2 share their span: each is not the other's negative, so the loss is below the unmasked one
    unmasked = info_nce(image, text_e[[0, 2, 3]], scale)
    assert float(expected) < float(unmasked)
