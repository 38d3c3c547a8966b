"""`evaluate_run` end to end on a tiny run: eval.json, reproducible splits, fractions, missing
classes, plots, the dataset-object path (colour labels, fine-tuning beats chance), and bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from hybridssl.app.evaluate import evaluate_run
from hybridssl.config import load_config
from hybridssl.data.synthetic import SyntheticScenes
from hybridssl.evaluation.evaldata import partition, prompt_dict, resolve_data
from hybridssl.evaluation.finetune import FinetuneConfig
from hybridssl.evaluation.labels import label_fraction_split, load_splits
from hybridssl.evaluation.lowlabel import check_fractions, check_seeds, make_splits, split_name

POOL, TEST = 120, 50
FRACTIONS = (0.01, 0.05, 0.1, 1.0)


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir):
    return tiny_run_dir


@pytest.fixture(scope="module")
def evaluated(run_dir):
    calls = []
    result = evaluate_run(run_dir, fractions=FRACTIONS, seeds=(0, 1), finetune_steps=4, pool_size=POOL,
                          test_size=TEST, progress=lambda *a: calls.append(a), threads=1, examples=3)
    return result, calls


def _pool_labels():
    pool = SyntheticScenes(size=POOL, split="val", seed=0, image_size=32)
    return np.array([pool.label_at(i) for i in range(POOL)], dtype=np.int64)


def test_eval_json_structure(run_dir, evaluated):
    result, _ = evaluated
    out = run_dir / "eval"
    assert json.loads((out / "eval.json").read_text()) == result
    assert {"image->text", "text->image", "image->audio", "audio->image", "text->audio", "audio->text"} == set(result["retrieval"])
    for r in result["retrieval"].values():
        assert {"R@1", "R@5", "R@10", "median_rank"} <= set(r) and r["n_queries"] == TEST
    assert set(result["zero_shot"]) == {"image", "audio"}
    assert result["data"]["n_pool"] == POOL and result["data"]["n_test"] == TEST
    low = result["low_label"]
    assert low["modality"] == "image" and low["n_classes"] == 8 and low["chance"] == 12.5
    assert set(low["protocols"]) == {"linear_probe", "knn", "finetune"}
    assert 12.5 <= low["majority"] <= 100
    assert set(low["floors"]) == {"raw_input", "random_init", "features"}
    for name in ("raw_input", "random_init"):
        assert list(low["floors"][name]) == ["0.01", "0.05", "0.1", "1"]
        assert all(r["accuracy"]["n"] == 2 for r in low["floors"][name].values())
    assert "pooled tower features" in low["features"]["linear_probe"] and "pooled" in low["features"]["finetune"]
    for by_fraction in low["protocols"].values():
        assert list(by_fraction) == ["0.01", "0.05", "0.1", "1"]
        for r in by_fraction.values():
            assert r["accuracy"]["n"] == 2 and len(r["accuracy"]["values"]) == 2
            assert r["accuracy"]["mean"] == pytest.approx(np.mean(r["accuracy"]["values"]))
            assert r["accuracy"]["std"] == pytest.approx(np.std(r["accuracy"]["values"], ddof=1))
            assert 0 <= r["macro_f1"]["mean"] <= 100
    attrs = result["attribute_probes"]
    assert set(attrs) == {"shape", "colour", "size", "position", "texture"}
    assert attrs["size"]["chance"] == 50.0 and attrs["colour"]["n_classes"] == 8
    # the shape labelling is the dataset's own label: same splits, same probes, same numbers
    for p in ("linear_probe", "knn"):
        for f, r in attrs["shape"]["protocols"][p].items():
            assert r["accuracy"]["values"] == low["protocols"][p][f]["accuracy"]["values"]
    assert (run_dir / "eval" / "attributes" / "colour" / "splits.json").exists()
    q = result["quality"]
    assert set(q["pairs"]) == {"image-text", "image-audio", "text-audio"}
    for m, v in q["modalities"].items():
        assert 0 < v["effective_rank"] <= v["dim"] and -4 <= v["uniformity"] <= 0, m
    for p in q["pairs"].values():
        assert 0 <= p["alignment"] <= 4


def test_splits_file_is_the_seeded_stratified_split(run_dir, evaluated):
    splits = load_splits(run_dir / "eval" / "splits.json")
    labels = _pool_labels()
    expected = make_splits(labels, FRACTIONS, (0, 1))
    assert set(splits) == set(expected)  # built-in data: no pool/test partition entry
    for name, sp in expected.items():
        for part in ("train", "val", "missing_classes"):
            np.testing.assert_array_equal(splits[name][part], sp[part])
    again = make_splits(labels, FRACTIONS, (0, 1))
    assert all(np.array_equal(again[k]["train"], expected[k]["train"]) for k in expected)
    assert not np.array_equal(expected[split_name(0.1, 0)]["train"], expected[split_name(0.1, 1)]["train"])
    ref = label_fraction_split(labels, 0.05, 1)
    np.testing.assert_array_equal(splits[split_name(0.05, 1)]["train"], ref["train"])


def test_fractions_grow_the_training_set_and_missing_classes_are_reported(evaluated):
    result, _ = evaluated
    low = result["low_label"]["protocols"]
    sizes = [low["linear_probe"][f]["n_train"][0] for f in ("0.01", "0.05", "0.1", "1")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4, sizes
    one = low["linear_probe"]["0.01"]
    assert one["n_train"][0] < 8 and len(one["missing_classes"][0]) == 8 - one["n_train"][0]
    assert set(one["missing_classes"][0]) <= set(result["data"]["label_names"])
    assert low["finetune"]["1"]["n_train"] == low["knn"]["1"]["n_train"]
    assert all(r["best_step"] <= 4 for r in low["finetune"]["1"]["runs"])


def test_plots_are_valid_pngs(evaluated):
    result, _ = evaluated
    for name in ("fractions_plot", "projection_plot", "retrieval_plot"):
        with Image.open(result["files"][name]) as im:
            im.verify()
        with Image.open(result["files"][name]) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_progress_reaches_its_total(evaluated):
    _, calls = evaluated
    done = [c[1] for c in calls]
    assert done == sorted(done) and calls[-1][1] == calls[-1][2] == 5 + len(FRACTIONS) * 2 * 2   # + the floors


def test_dataset_object_colour_labels_and_split_reuse(run_dir, tmp_path):
    ds = SyntheticScenes(size=150, split="val", seed=5, image_size=32, label_attribute="colour", missing_audio=1.0)
    ft = FinetuneConfig(steps=60, lr_encoder=1e-3, lr_head=1e-2, eval_every=10)
    kw = dict(fractions=(1.0,), seeds=(0,), finetune_config=ft, threads=1, examples=2)
    a = evaluate_run(run_dir, data=ds, out_dir=tmp_path / "a", **kw)
    low = a["low_label"]
    assert low["chance"] == 12.5 and low["protocols"]["finetune"]["1"]["accuracy"]["mean"] > 25.0
    assert low["floors"]["raw_input"]["1"]["accuracy"]["mean"] > 40.0     # colour is in the pixels: a real floor
    splits = load_splits(tmp_path / "a" / "splits.json")
    pool, test = splits["partition"]["pool"], splits["partition"]["test"]
    assert len(test) == 30 and not set(pool) & set(test) and sorted([*pool, *test]) == list(range(150))
    np.testing.assert_array_equal(splits["partition"]["seed"], [0])
    # reusing the written splits reproduces the frozen protocols exactly
    b = evaluate_run(run_dir, data=ds, out_dir=tmp_path / "b", splits_file=tmp_path / "a" / "splits.json",
                     finetune=False, **kw)
    assert (tmp_path / "a" / "splits.json").read_bytes() == (tmp_path / "b" / "splits.json").read_bytes()
    for p in ("linear_probe", "knn"):
        ra, rb = (x["1"]["runs"][0] for x in (low["protocols"][p], b["low_label"]["protocols"][p]))
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    assert "finetune" not in b["low_label"]["protocols"]
    with pytest.raises(ValueError, match="no train/val split"):
        evaluate_run(run_dir, data=ds, out_dir=tmp_path / "c", splits_file=tmp_path / "a" / "splits.json",
                     fractions=(0.5,), seeds=(0,), finetune=False, threads=1)


def test_resolve_data_forms():
    cfg = load_config("tiny", [])
    d = resolve_data(None, cfg, 30, 20)
    assert (d["pool"].split, len(d["pool"]), d["test"].split, len(d["test"])) == ("val", 30, "test", 20)
    assert d["pool"].image_size == cfg.data.image_size and d["partition"] is None
    d = resolve_data("builtin:label_attribute=colour,size=12", cfg, 30, 20)
    assert len(d["pool"]) == len(d["test"]) == 12 and d["pool"].label_attribute == "colour"
    d = resolve_data("builtin:split=train,size=10", cfg, 30, 20)
    assert len(d["pool"]) == 8 and len(d["test"]) == 2 and d["partition"]["test"] == d["test"].indices
    with pytest.raises(ValueError, match="pool dataset, test dataset"):
        resolve_data((d["pool"],), cfg, 30, 20)
    full = resolve_data("builtin:split=train,size=100", cfg, 30, 5)
    capped = resolve_data("builtin:split=train,size=100", cfg, 30, 5, cap=True)
    assert len(capped["pool"]) == 30 and len(capped["test"]) == 5
    assert set(capped["pool"].indices) <= set(full["pool"].indices)
    assert set(capped["test"].indices) <= set(full["test"].indices)
    assert max(capped["pool"].indices) > 60          # a uniform subsample, not the first positions


def test_partition_is_seeded_disjoint_and_complete():
    p1, t1 = partition(50, 3)
    assert (p1, t1) == partition(50, 3) and (p1, t1) != partition(50, 4)
    assert len(t1) == 10 and sorted(p1 + t1) == list(range(50))
    perm = np.random.default_rng(3).permutation(50)
    assert t1 == sorted(perm[:10].tolist())
    with pytest.raises(ValueError, match="at least 2"):
        partition(1, 0)


def test_argument_checks():
    assert check_fractions([1, 0.1, 0.1]) == (0.1, 1.0)
    for bad in ([0.0], [1.5], [-0.1], [float("nan")], [], ["x"]):
        with pytest.raises(ValueError, match="fraction"):
            check_fractions(bad)
    assert check_seeds([2, 0]) == (2, 0)
    for bad in ([], [0, 0], [-1], [True], [0.5]):
        with pytest.raises(ValueError, match="seed"):
            check_seeds(bad)
    assert prompt_dict(["a {}", "a photo of a {}"], ["cat", "dog"]) == {
        "cat": ["a cat", "a photo of a cat"], "dog": ["a dog", "a photo of a dog"]}
    for bad in (["no placeholder"], ["{} and {}"], [" "], ["a {x}{}"]):
        with pytest.raises(ValueError, match="prompt|empty"):
            prompt_dict(bad, ["cat"])


def test_bad_runs_and_options_fail_clearly(run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        evaluate_run(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        evaluate_run(run_dir, fractions=(0.0, 0.5))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        evaluate_run(run_dir, fractions=(1.2,))
    with pytest.raises(ValueError, match="placeholder"):
        evaluate_run(run_dir, prompts=["a photo"])
    with pytest.raises(ValueError, match="threads"):
        evaluate_run(run_dir, threads=-1)
    with pytest.raises(ValueError, match="not available"):
        evaluate_run(run_dir, data=SyntheticScenes(size=10, split="val", image_size=32, missing_audio=1.0),
                     modality="audio", out_dir=tmp_path / "x", threads=1)
    assert not (tmp_path / "empty" / "eval").exists()


def test_a_fraction_without_training_items_is_skipped_not_fatal(run_dir, tmp_path):
    pool = SyntheticScenes(size=40, split="val", seed=1, image_size=32, missing_audio=1.0)
    test = SyntheticScenes(size=20, split="test", seed=1, image_size=32, missing_audio=1.0)
    r = evaluate_run(run_dir, data=(pool, test), fractions=(0.01, 1.0), seeds=(0,), finetune=False,
                     out_dir=tmp_path, threads=1, examples=1)
    one = r["low_label"]["protocols"]["linear_probe"]["0.01"]
    assert one["n_train"] == [0] and one["accuracy"] is None and "no training" in one["skipped"]
    assert len(one["missing_classes"][0]) == len(set(pool.label_at(i) for i in range(40)))
    assert r["low_label"]["protocols"]["knn"]["1"]["accuracy"]["n"] == 1
    assert r["data"]["n_pool"] == 40 and r["data"]["n_test"] == 20 and "audio" not in r["zero_shot"]
    assert (tmp_path / "fractions.png").is_file()


def test_modality_rows_pick_features_or_embeddings():
    from hybridssl.evaluation.embed import Embeddings
    from hybridssl.evaluation.lowlabel import modality_rows

    emb = Embeddings(keys=["a", "b", "c"], labels=np.array([2, -1, 0]),
                     by_modality={"image": np.eye(2, 4)}, index={"image": np.array([0, 2])},
                     features={"image": np.arange(6.0).reshape(2, 3)})
    positions = np.array([10, 11, 12])
    x, y, pos = modality_rows(emb, positions, "image", "features")
    assert x.shape == (2, 3) and y.tolist() == [2, 0] and pos.tolist() == [10, 12]
    x, _, _ = modality_rows(emb, positions, "image", "embedding")
    assert x.shape == (2, 4)
    with pytest.raises(ValueError, match="probe_input"):
        modality_rows(emb, positions, "image", "logits")


def test_extracted_embedding_is_the_normalised_head_of_the_features(run_dir):
    import torch

    from hybridssl.data.open import open_dataset
    from hybridssl.evaluation.embed import extract_embeddings
    from hybridssl.runs import load_run

    run = load_run(run_dir)
    ds = open_dataset("builtin", split="test", size=8, image_size=run.cfg.data.image_size)
    emb = extract_embeddings(run.model, ds, run.spec, run.tokenizer)
    for m in run.model.modalities:
        feats = torch.from_numpy(emb.features[m])
        assert feats.shape == (8, run.model.feature_dim(m))
        np.testing.assert_allclose(run.model.forward_head(m, feats).detach().numpy(), emb.by_modality[m], atol=1e-5)


def test_evaluating_on_the_runs_own_user_data_never_uses_pretraining_items(tmp_path):
    """The labelled pool and the test set of user data come from the run's held-out split only."""
    import json as _json

    from PIL import Image

    from hybridssl.config import load_config
    from hybridssl.data.splits import build_datasets
    from hybridssl.evaluation.evaldata import resolve_data

    rows = []
    for k in range(60):
        Image.fromarray(np.full((6, 6, 3), k, np.uint8)).save(tmp_path / f"{k}.png")
        rows.append(_json.dumps({"image": f"{k}.png", "caption": f"thing {k}", "label": ["a", "b"][k % 2]}))
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    spec = f"manifest:{tmp_path / 'm.jsonl'}"
    cfg = load_config("tiny", [f"data.train={spec}", "data.val_fraction=0.5"])
    train, _ = build_datasets(cfg.data, cfg.train.seed)
    trained = {train.caption_at(i) for i in range(len(train))}
    for data in (None, spec):
        src = resolve_data(data, cfg, 100, 100)
        seen = [src[part].caption_at(i) for part in ("pool", "test") for i in range(len(src[part]))]
        assert len(seen) == 30 and not set(seen) & trained and src["held_out"] is True
    cfg_val = load_config("tiny", [f"data.train={spec}", f"data.val={spec}"])  # an explicit val: same spec twice
    assert resolve_data(spec, cfg_val, 100, 100)["held_out"] is False  # transductive, and said so
    assert resolve_data(None, load_config("tiny"), 10, 10)["held_out"] is True
