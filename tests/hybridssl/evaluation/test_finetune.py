"""Fine-tuning protocol: position tagging, cached inputs, the tower's parameters, determinism,
best-by-validation checkpoint selection, learning an easy label, and bad input."""

import numpy as np
import pytest
import torch

from hybridssl.config import load_config
from hybridssl.data.synthetic import SyntheticScenes
from hybridssl.data.tagged import PositionTagged
from hybridssl.evaluation.finetune import (
    FinetuneConfig,
    ModalityInputs,
    TowerClassifier,
    finetune_classifier,
    load_inputs,
    pick_modality,
    shuffled_batches,
)
from hybridssl.runs import build_model, load_run


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead (and contention on a shared machine)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tiny_run_dir):
    return load_run(tiny_run_dir)


@pytest.fixture(scope="module")
def colour_inputs(run):
    ds = SyntheticScenes(size=240, split="val", seed=3, image_size=32, label_attribute="colour", missing_audio=1.0)
    return load_inputs(ds, run.spec, run.tokenizer, "image")


def test_position_tagged_samples_carry_their_position():
    from hybridssl.data.batching import Collator
    from hybridssl.preprocessing import ImageSpec, PreprocessSpec

    ds = SyntheticScenes(size=6, split="test", image_size=16, missing_audio=1.0)
    tagged = PositionTagged(ds, [4, 1])
    assert len(tagged) == 2
    assert [tagged[i].position for i in range(2)] == [4, 1]
    assert [tagged[i].meta["key"] for i in range(2)] == [ds.scene_key(4), ds.scene_key(1)]  # keys untouched
    assert ds[4].position is None                                                            # the base too
    batch = Collator(PreprocessSpec(image=ImageSpec(size=16, resize=16)), None, ("image",))([tagged[0], ds[2], tagged[1]])
    assert batch["positions"].tolist() == [4, -1, 1]


def test_load_inputs_keeps_positions_and_labels(run):
    ds = SyntheticScenes(size=40, split="val", image_size=32, missing_image=0.5, missing_audio=1.0)
    inp = load_inputs(ds, run.spec, run.tokenizer, "image", positions=range(5, 40))
    with_image = [i for i in range(5, 40) if ds[i].image is not None]
    assert inp.positions.tolist() == with_image
    assert inp.labels.tolist() == [ds.label_at(i) for i in with_image]
    assert inp.x.shape == (len(with_image), 3, 32, 32)
    sub = inp.select([with_image[3], with_image[0]])
    assert sub.positions.tolist() == [with_image[3], with_image[0]]
    assert torch.equal(sub.x[1], inp.x[0])
    no_image = next(i for i in range(5, 40) if i not in with_image)
    with pytest.raises(ValueError, match="no image input"):
        inp.select([no_image])
    text = load_inputs(ds, run.spec, run.tokenizer, "text", positions=[0, 1, 2])
    assert text.attention is not None and text.x.shape[0] == 3 and text.attention.dtype == torch.bool


def test_tower_parameters_are_exactly_what_the_logits_depend_on():
    cfg = load_config("tiny", ["model.shared_depth=1"])
    model = build_model(cfg, vocab_size=50)
    clf = TowerClassifier(model, "image", n_classes=3)
    clf(torch.randn(2, 3, 32, 32)).sum().backward()
    with_grad = {id(p) for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == {id(p) for p in clf.tower_parameters()}
    assert clf.head.weight.grad is not None


def test_logits_are_the_linear_head_of_the_pooled_features(run):
    clf = TowerClassifier(run.model, "image", n_classes=4)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        pooled = run.model.forward_features("image", x)
        ref = torch.stack([torch.stack([pooled[i] @ clf.head.weight[k] + clf.head.bias[k] for k in range(4)])
                           for i in range(3)])
        assert torch.allclose(clf(x), ref, atol=1e-6)


def test_batches_walk_seeded_epoch_permutations():
    batches = [b.tolist() for b in shuffled_batches(10, 4, 6, seed=5)]
    assert all(len(b) == 4 for b in batches)
    for epoch in range(3):  # two disjoint batches per epoch (the remainder of 2 is dropped)
        a, b = batches[2 * epoch], batches[2 * epoch + 1]
        assert not set(a) & set(b)
        perm = np.random.default_rng([5, epoch]).permutation(10).tolist()
        assert a + b == perm[:8]
    assert [b.tolist() for b in shuffled_batches(3, 8, 2, seed=0)] == [np.random.default_rng([0, e]).permutation(3).tolist()
                                                                for e in (0, 1)]


def _splits(inp: ModalityInputs):
    pos = inp.positions
    return inp.select(pos[:140]), inp.select(pos[140:180]), inp.select(pos[180:])


def test_finetune_learns_colour_deterministically_and_leaves_the_model_alone(run, colour_inputs):
    train, val, test = _splits(colour_inputs)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    cfg = FinetuneConfig(steps=60, lr_encoder=1e-3, lr_head=1e-2, eval_every=10)
    a = finetune_classifier(run.model, "image", train, val, test, 8, cfg, seed=0)
    b = finetune_classifier(run.model, "image", train, val, test, 8, cfg, seed=0)
    assert a["accuracy"] > 2 * 100 / 8, a  # chance is 12.5 %
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert a["n_train"] == 140 and a["steps"] == 60 and 0 <= a["macro_f1"] <= 100
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_the_best_validation_checkpoint_is_the_one_reported(run, colour_inputs):
    train, val, test = _splits(colour_inputs)
    long = finetune_classifier(run.model, "image", train, val, test, 8,
                               FinetuneConfig(steps=30, lr_encoder=1e-3, lr_head=1e-2, eval_every=1), seed=1)
    assert 1 <= long["best_step"] <= 30
    # training stopped at the best step reproduces the same parameters, hence the same test metrics
    short = finetune_classifier(run.model, "image", train, val, test, 8,
                                FinetuneConfig(steps=long["best_step"], lr_encoder=1e-3, lr_head=1e-2,
                                               eval_every=long["best_step"]), seed=1)
    assert short["val_accuracy"] == long["val_accuracy"]
    assert short["accuracy"] == long["accuracy"] and short["macro_f1"] == long["macro_f1"]


def test_pick_modality():
    assert pick_modality(("image", "text", "audio"), ("text", "audio", "image")) == "image"
    assert pick_modality(("image", "text", "audio"), ("text", "audio")) == "audio"
    assert pick_modality(("text",), ("image", "text")) == "text"
    assert pick_modality(("image", "audio"), ("image", "audio"), "audio") == "audio"
    with pytest.raises(ValueError, match="not available"):
        pick_modality(("image",), ("image",), "audio")
    with pytest.raises(ValueError, match="share no modality"):
        pick_modality(("image",), ("audio",))


def test_bad_input(run, colour_inputs):
    train, val, test = _splits(colour_inputs)
    with pytest.raises(ValueError, match="at least 2 classes"):
        TowerClassifier(run.model, "image", 1)
    with pytest.raises(ValueError, match="no 'video' tower"):
        TowerClassifier(run.model, "video", 3)
    with pytest.raises(ValueError, match="steps"):
        FinetuneConfig(steps=0)
    with pytest.raises(ValueError, match="learning rates"):
        FinetuneConfig(lr_head=0.0)
    with pytest.raises(ValueError, match="train split is empty"):
        finetune_classifier(run.model, "image", train.select([]), val, test, 8)
    with pytest.raises(ValueError, match="labels must lie in"):
        finetune_classifier(run.model, "image", train, val, test, 4)
    with pytest.raises(ValueError, match="tower is 'audio'"):
        finetune_classifier(run.model, "audio", train, val, test, 8)
    ds = SyntheticScenes(size=4, split="val", image_size=32, missing_image=1.0, missing_audio=1.0)
    with pytest.raises(ValueError, match="no item of the dataset carries"):
        load_inputs(ds, run.spec, run.tokenizer, "image")
    with pytest.raises(ValueError, match="tokenizer"):
        load_inputs(ds, run.spec, None, "text")
