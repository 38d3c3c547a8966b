"""The hybrid task on one real tiny batch: every objective option and weighting strategy runs a step."""

import pytest
import torch

from hybridssl.config import load_config
from hybridssl.data.batching import Collator, SafeDataset
from hybridssl.data.synthetic import SyntheticScenes
from hybridssl.losses.mlm import TextMasking
from hybridssl.losses.plan import loss_names, resolve_pairs
from hybridssl.runs import build_model
from hybridssl.task import HybridTask
from hybridssl.tokenizer import TextTokenizer, train_tokenizer


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("tiny")
    data = SyntheticScenes(size=16, seed=0, image_size=32)
    tok = TextTokenizer(train_tokenizer(data.captions(), 200), cfg.preprocess.text.max_length)
    safe = SafeDataset(data)
    batch = Collator(cfg.preprocess, tok, cfg.model.modalities)([safe[i] for i in range(12)])
    return tok, batch


def _step(overrides, setup):
    tok, batch = setup
    cfg = load_config("tiny", overrides)
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab_size)
    task = HybridTask(cfg, model, TextMasking(tok.mask_id, tok.vocab_size, tok.special_ids, tok.pad_id))
    out = task(batch, 0, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert set(out.weights) == set(out.parts)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders["image"].parameters())
    return task, out


@pytest.mark.parametrize("strategy", ["fixed", "uncertainty", "dwa", "gradnorm", "adaptive"])
def test_every_weighting_strategy_trains(strategy, setup):
    _, out = _step([f"weighting.strategy={strategy}"], setup)
    assert set(out.parts) == {"contrastive/image-text", "contrastive/image-audio", "contrastive/text-audio",
                              "mae/image", "mae/audio", "mlm/text"}


def test_vae_ntxent_queue_and_hard_negatives(setup):
    task, out = _step(["model.generative=vae", "loss.ntxent_weight=1", "loss.queue_size=32", "loss.hard_negatives=8",
                       "loss.mixed_negatives=4", "loss.query_mixed_negatives=2"], setup)
    assert {"vae/image", "vae/audio", "ntxent/image"} <= set(out.parts)
    assert task.queues["image"].negatives().shape[0] == 12  # the batch's momentum keys were queued
    before = [p.clone() for p in task.momentum_model.parameters()][0]
    for p in task.model.parameters():
        p.data.add_(1.0)
    task.after_optimizer_step()
    assert not torch.equal(before, next(task.momentum_model.parameters()))


def test_an_unmasked_vae_reconstructs_every_patch_while_an_unmasked_mae_has_nothing_to_do(setup):
    task, out = _step(["model.generative=vae", "model.image_mask_ratio=0", "model.audio_mask_ratio=0"], setup)
    assert {"vae/image", "vae/audio"} <= set(out.parts)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.model.decoders["image"].parameters())
    _, mae = _step(["model.image_mask_ratio=0"], setup)
    assert "mae/image" not in mae.parts and "mae/audio" in mae.parts


def test_ablation_variants_have_the_right_losses(setup):
    _, out = _step(["loss.contrastive=false"], setup)
    assert not any(k.startswith("contrastive") for k in out.parts)
    _, out = _step(["model.generative=none", "model.text_generative=none"], setup)
    assert all(k.startswith("contrastive") for k in out.parts)
    _, out = _step(["loss.pairs=image-text"], setup)
    assert [k for k in out.parts if k.startswith("contrastive")] == ["contrastive/image-text"]


def test_one_pass_and_two_pass_give_the_same_loss_names(setup):
    _, one = _step([], setup)
    _, two = _step(["loss.two_pass=true"], setup)
    assert one.parts.keys() == two.parts.keys()
    # reconstruction sees the same masked pass; only the contrastive embeddings change
    assert one.parts["mae/image"] == pytest.approx(two.parts["mae/image"], rel=1e-5)
    assert one.parts["contrastive/image-text"] != pytest.approx(two.parts["contrastive/image-text"], rel=1e-5)


def test_configuration_errors():
    cfg = load_config("tiny", ["loss.hard_negatives=4"])
    with pytest.raises(ValueError, match="queue_size"):
        HybridTask(cfg, build_model(cfg, 50), None)
    with pytest.raises(ValueError, match="video"):
        resolve_pairs(("image", "text"), ("image-video",))
    cfg = load_config("tiny", ["loss.contrastive=false", "model.generative=none", "model.text_generative=none"])
    with pytest.raises(ValueError, match="no loss"):
        loss_names(cfg, ("image", "text"))


def test_text_ntxent_and_colour_views_are_weighted_terms(setup):
    """ntxent/text (two MLM corruptions) and ntxent/image with a colour-permuted view are real terms,
    scaled by their weights (not on-switches)."""
    _, one = _step(["loss.text_ntxent_weight=1", "loss.ntxent_weight=1", "loss.ntxent_view=colour"], setup)
    _, two = _step(["loss.text_ntxent_weight=2", "loss.ntxent_weight=3", "loss.ntxent_view=colour"], setup)
    assert {"ntxent/text", "ntxent/image"} <= set(one.parts)
    assert two.parts["ntxent/text"] == pytest.approx(2 * one.parts["ntxent/text"], rel=1e-5)
    assert two.parts["ntxent/image"] == pytest.approx(3 * one.parts["ntxent/image"], rel=1e-5)
    _, plain = _step(["loss.text_ntxent_weight=1", "model.text_generative=none"], setup)  # views without MLM
    assert "ntxent/text" in plain.parts and "mlm/text" not in plain.parts
    with pytest.raises(ValueError, match="ntxent_view"):
        load_config("tiny", ["loss.ntxent_view=hue"])


def test_text_ntxent_on_paraphrases(setup):
    """view=paraphrase pairs each caption with another caption of its item; without paraphrases in the
    data it is the masking view."""
    tok, _ = setup
    cfg = load_config("tiny")
    data = SyntheticScenes(size=16, seed=0, image_size=32, paraphrases=1)
    batch = Collator(cfg.preprocess, tok, cfg.model.modalities)([SafeDataset(data)[i] for i in range(12)])
    views = ["loss.text_ntxent_weight=1", "model.text_generative=none"]
    _, masked = _step(views, (tok, batch))
    _, para = _step([*views, "loss.text_ntxent_view=paraphrase"], (tok, batch))
    assert para.parts["ntxent/text"] != pytest.approx(masked.parts["ntxent/text"], rel=1e-3)
    _, same = _step([*views, "loss.text_ntxent_view=paraphrase"], setup)   # no paraphrases: the masking
    _, mask_only = _step(views, setup)
    assert same.parts["ntxent/text"] == pytest.approx(mask_only.parts["ntxent/text"], rel=1e-6)
    _, target = _step([*views, "loss.text_ntxent_view=paraphrase", "loss.paraphrase_target=true"], (tok, batch))
    assert target.parts["ntxent/text"] == pytest.approx(para.parts["ntxent/text"], rel=1e-6)
    pair = "contrastive/image-text"   # only the pairs' text side moves: the mean of the two wordings
    assert target.parts[pair] != pytest.approx(para.parts[pair], rel=1e-3)
    assert target.parts["mae/image"] == pytest.approx(para.parts["mae/image"], rel=1e-6)
    with pytest.raises(ValueError, match="text_ntxent_view"):
        load_config("tiny", ["loss.text_ntxent_view=synonyms"])
    with pytest.raises(ValueError, match="paraphrase_target needs"):
        load_config("tiny", ["loss.paraphrase_target=true", "loss.text_ntxent_weight=1"])


def test_colour_permutation_changes_colour_only():
    from hybridssl.augment import permute_colours
    from hybridssl.preprocessing import ImageSpec

    spec = ImageSpec(size=4, resize=4)
    raw = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    out = permute_colours((raw - mean) / std, spec, torch.Generator().manual_seed(1)) * std + mean
    for i in range(5):
        sources = [next(c for c in range(3) if torch.allclose(out[i, k], raw[i, c], atol=1e-6)) for k in range(3)]
        assert sorted(sources) == [0, 1, 2] and sources != [0, 1, 2]  # a real permutation, never the identity


def test_single_modality_weighting_reads_the_redundancy_of_the_ntxent_views(setup):
    """Image-only data has no modality pair; the adaptive weighting then gets the NT-Xent views'
    redundancy, so the reconstruction weight moves with it instead of sitting at its base (1.0)."""
    tok, batch = setup
    cfg = load_config("tiny", ["model.modalities=[image]", "loss.ntxent_weight=1", "weighting.strategy=adaptive"])
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab_size, ("image",))
    task = HybridTask(cfg, model, None)
    out = task(batch, 0, torch.Generator().manual_seed(0))
    assert set(out.parts) == {"mae/image", "ntxent/image"}
    r = out.signals["redundancy"]
    assert 0 < r < 1
    kappa = task.weighting.kappa
    assert out.weights["mae/image"] == pytest.approx(min(task.weighting.w_max, 1.0 + kappa * r))


def test_caption_word_terms_for_every_tower_scaled_by_their_weight(setup):
    """words/<m> for every tower on captioned items, one shared head, scaled by loss.caption_words_weight;
    without contrastive pairs the embeddings are still computed for it."""
    task, one = _step(["loss.caption_words_weight=1"], setup)
    _, two = _step(["loss.caption_words_weight=2"], setup)
    assert {"words/image", "words/text", "words/audio"} <= set(one.parts)
    assert two.parts["words/image"] == pytest.approx(2 * one.parts["words/image"], rel=1e-5)
    assert task.words is not None and task.words.words.grad is not None and task.words.n_docs.item() > 0
    _, alone = _step(["loss.caption_words_weight=1", "loss.contrastive=false"], setup)
    assert "words/image" in alone.parts and not any(k.startswith("contrastive") for k in alone.parts)
    with pytest.raises(ValueError, match="caption_words_weight"):
        load_config("tiny", ["loss.caption_words_weight=-1"])
    feat_task, on_features = _step(["loss.caption_words_weight=1", "loss.caption_words_on=features"], setup)
    assert set(feat_task.words.feature_heads) == set(feat_task.model.modalities)
    assert feat_task.words.feature_heads["image"].weight.grad is not None and "words/image" in on_features.parts
    with pytest.raises(ValueError, match="caption_words_on"):
        load_config("tiny", ["loss.caption_words_on=pixels"])


def test_subcaption_terms_for_every_non_text_tower(setup):
    """subcaption/<m> for image and audio (not text), scaled by loss.subcaption_weight."""
    _, one = _step(["loss.subcaption_weight=1"], setup)
    _, two = _step(["loss.subcaption_weight=2"], setup)
    assert {"subcaption/image", "subcaption/audio"} <= set(one.parts) and "subcaption/text" not in one.parts
    assert two.parts["subcaption/image"] == pytest.approx(2 * one.parts["subcaption/image"], rel=1e-5)
    for bad in ("loss.subcaption_weight=-1", "loss.subcaption_tokens=0"):
        with pytest.raises(ValueError, match="subcaption"):
            load_config("tiny", [bad])
