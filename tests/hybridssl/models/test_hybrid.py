import pytest
import torch

from hybridssl.config import load_config
from hybridssl.models.hybrid import HybridModel


@pytest.fixture
def model():
    cfg = load_config("tiny")
    torch.manual_seed(0)
    return HybridModel(cfg.model, cfg.preprocess, vocab_size=50), cfg


def _inputs(cfg, b=3):
    s, a = cfg.preprocess.image.size, cfg.preprocess.audio
    ids = torch.randint(5, 50, (b, cfg.preprocess.text.max_length))
    attn = torch.ones_like(ids, dtype=torch.bool)
    attn[0, 6:] = False
    return torch.randn(b, 3, s, s), torch.randn(b, 1, a.n_mels, a.num_frames), ids, attn


def test_embeddings_are_normalised_and_deterministic(model):
    m, cfg = model
    m.eval()
    img, aud, ids, attn = _inputs(cfg)
    for e in (m.embed("image", img), m.embed("audio", aud), m.embed("text", ids, attn)):
        assert e.shape == (3, cfg.model.embed_dim)
        assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.equal(m.embed("image", img), m.embed("image", img))


def test_masked_encode_sees_only_visible_tokens(model):
    m, cfg = model
    img = _inputs(cfg)[0]
    enc = m.encode("image", img, mask_ratio=0.75, generator=torch.Generator().manual_seed(0))
    n = m.encoders["image"].stem.num_tokens
    assert enc.tokens.shape[1] == round(n * 0.25)
    assert enc.masking.mask.shape == (3, n)
    # changing a masked patch cannot change the pooled output (one pass = visible tokens only)
    masked_patch = int(torch.nonzero(enc.masking.mask[0])[0])
    p = m.encoders["image"].stem.patch[0]
    g = m.encoders["image"].stem.grid[1]
    r, c = divmod(masked_patch, g)
    img2 = img.clone()
    img2[0, :, r * p:(r + 1) * p, c * p:(c + 1) * p] += 5.0
    enc2 = m.encode("image", img2, mask_ratio=0.75, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(enc.pooled, enc2.pooled, atol=1e-6)


def test_text_padding_does_not_leak(model):
    m, cfg = model
    m.eval()
    _, _, ids, attn = _inputs(cfg)
    ids2 = ids.clone()
    ids2[0, 6:] = 7  # only padding positions of item 0 change
    assert torch.allclose(m.embed("text", ids, attn)[0], m.embed("text", ids2, attn)[0], atol=1e-5)


def test_decoders_predict_every_patch(model):
    m, cfg = model
    img, aud, _, _ = _inputs(cfg)
    for name, x in (("image", img), ("audio", aud)):
        enc = m.encode(name, x, mask_ratio=0.5)
        out = m.decoders[name](enc.tokens, enc.masking.ids_restore)
        assert out.pred.shape == m.patch_target(name, x).shape


def test_shared_trunk_and_vae_variants():
    cfg = load_config("tiny", ["model.shared_depth=1", "model.generative=vae", "model.modalities=image,text"])
    m = HybridModel(cfg.model, cfg.preprocess, vocab_size=40)
    assert len(m.trunk) == 1 and "audio" not in m.encoders
    assert m.shared_parameters() == list(m.trunk[-1].parameters())
    img = torch.randn(2, 3, cfg.preprocess.image.size, cfg.preprocess.image.size)
    enc = m.encode("image", img, mask_ratio=0.75)
    out = m.decoders["image"](enc.tokens, enc.masking.ids_restore)
    assert out.mu.shape == (2, enc.tokens.shape[1], cfg.model.vae_latent)


def test_bad_configuration_and_inputs_are_refused(model):
    m, cfg = model
    with pytest.raises(ValueError, match="no 'video' encoder|has no"):
        m.embed("video", torch.zeros(1))
    with pytest.raises(ValueError, match="at least"):
        m.embed("image", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="attention"):
        m.encode("text", torch.zeros(1, 4, dtype=torch.long))
    bad = load_config("tiny", ["model.modalities=smell"])
    with pytest.raises(ValueError, match="modalities"):
        HybridModel(bad.model, bad.preprocess, 10)


def test_convolutional_image_stem():
    cfg = load_config("tiny", ["model.image_stem=conv"])
    m = HybridModel(cfg.model, cfg.preprocess, vocab_size=40)
    img = torch.randn(2, 3, cfg.preprocess.image.size, cfg.preprocess.image.size)
    assert m.encode("image", img).tokens.shape[1] == m.encoders["image"].stem.num_tokens
    bad = load_config("tiny", ["model.image_stem=conv", "model.image_patch=6", "preprocess.image.size=36",
                               "preprocess.image.resize=36"])
    with pytest.raises(ValueError, match="power-of-two"):
        HybridModel(bad.model, bad.preprocess, 10)


def test_per_modality_tower_sizes():
    cfg = load_config("tiny", ["model.towers.image.width=48", "model.towers.image.depth=3",
                               "model.towers.image.heads=3"])
    m = HybridModel(cfg.model, cfg.preprocess, vocab_size=40)
    assert m.feature_dim("image") == 48 and m.feature_dim("text") == cfg.model.width
    assert len(m.encoders["image"].blocks) == 3 and len(m.encoders["text"].blocks) == cfg.model.depth
    img = torch.randn(2, 3, cfg.preprocess.image.size, cfg.preprocess.image.size)
    assert m.forward_features("image", img).shape == (2, 48)
    assert m.embed("image", img).shape == (2, cfg.model.embed_dim)
    enc = m.encode("image", img, mask_ratio=0.5)
    assert m.decoders["image"](enc.tokens, enc.masking.ids_restore).pred.shape[-1] == 3 * cfg.model.image_patch ** 2
    # the tower's parameters are exactly the bigger image encoder + its norm
    own = sum(p.numel() for p in m.tower_parameters("image"))
    assert own == sum(p.numel() for p in [*m.encoders["image"].parameters(), *m.norms["image"].parameters()])


@pytest.mark.parametrize("overrides, match", [
    (["model.towers.smell.width=32"], "unknown modalities"),
    (["model.towers.image.colour=3"], "unknown key"),
    (["model.towers.image.width=50", "model.towers.image.heads=3"], "divisible"),
    (["model.towers.image.width=48", "model.towers.image.heads=3", "model.shared_depth=1"], "shared trunk"),
])
def test_bad_tower_overrides_are_refused(overrides, match):
    cfg = load_config("tiny", overrides)
    with pytest.raises(ValueError, match=match):
        HybridModel(cfg.model, cfg.preprocess, vocab_size=40)


def test_cnn_stem_never_sees_the_masked_patches():
    """Overlapping receptive fields: the input's masked patches are zeroed before the stem, so
    changing what is under the mask changes no visible token."""
    cfg = load_config("tiny", ["model.image_stem=cnn", "model.pool=max"])
    m = HybridModel(cfg.model, cfg.preprocess, vocab_size=40).eval()
    s = cfg.preprocess.image.size
    img = torch.randn(2, 3, s, s)
    a = m.encode("image", img, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    stem = m.encoders["image"].stem
    assert stem.overlapping and a.tokens.shape[1] == stem.num_tokens // 2
    hidden = a.masking.mask.view(2, 1, *stem.grid).repeat_interleave(8, 2).repeat_interleave(8, 3)
    changed = img + 5.0 * hidden * torch.randn_like(img)
    b = m.encode("image", changed, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.tokens, b.tokens)
    assert not torch.allclose(m.encode("image", img).pooled, m.encode("image", changed).pooled)
    torch.testing.assert_close(a.pooled, a.tokens.amax(1))  # max pooling over the visible tokens


def test_max_pooling_of_text_ignores_padding():
    cfg = load_config("tiny", ["model.pool=max"])
    m = HybridModel(cfg.model, cfg.preprocess, vocab_size=40).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 9, 9]])
    attn = torch.tensor([[True, True, True, False, False], [True, True, True, False, False]])
    torch.testing.assert_close(m.forward_features("text", ids, attn)[0], m.forward_features("text", ids, attn)[1])
    with pytest.raises(ValueError, match="pool"):
        HybridModel(load_config("tiny", ["model.pool=median"]).model, cfg.preprocess, vocab_size=40)
