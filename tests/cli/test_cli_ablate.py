"""`hssl ablate --quick` end to end on the tiny preset (one seed): every variant trains, is evaluated,
and lands in ablation.md / .json / .png with the losses the variant promises."""

import json

import pytest

from cli.main import main
from hybridssl.app.ablation import VARIANTS


@pytest.mark.slow
def test_ablate_quick_tiny(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablate", "--config", "tiny", "--quick", "--seeds", "1", "--out", str(out), "--log", "tensorboard"]) == 0
    result = json.loads((out / "ablation.json").read_text())
    table = result["table"]["builtin"]
    assert set(table) == set(VARIANTS)
    for variant, metrics in table.items():
        assert {"linear_probe@0.05", "linear_probe@0.1", "knn@0.1", "retrieval_R@1"} <= set(metrics), variant
        assert metrics["linear_probe@0.1"]["n"] == 1
        attrs = {m for m in metrics if m.startswith("attribute:")}
        assert attrs == {f"attribute:{a}" for a in ("shape", "colour", "size", "position", "texture")}
        assert metrics["attributes_mean"]["mean"] == pytest.approx(
            sum(metrics[a]["mean"] for a in attrs) / len(attrs))
    assert result["attribute_chance"]["builtin"]["attribute:size"] == 50.0
    # each variant trained the objective it names
    parts = {v: json.loads((out / "builtin" / v / "seed0" / "metrics.jsonl").read_text().splitlines()[0])["parts"]
             for v in VARIANTS}
    assert not any(k.startswith("contrastive") for k in parts["generative-only"])
    assert all(k.startswith("contrastive") for k in parts["contrastive-only"])
    assert set(json.loads((out / "builtin" / "no-dynamic-weighting" / "seed0" / "metrics.jsonl").read_text()
                          .splitlines()[0])["weights"].values()) == {1.0}
    assert "| full |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").stat().st_size > 1000
    md = (out / "ablation.md").read_text()
    assert "Attribute probes" in md and "size (50.0)" in md
    # tracked: each variant's run side by side under out/tensorboard, and the table as one more run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {str(p.parent.relative_to(out / "tensorboard")) for p in (out / "tensorboard").rglob("events.out.tfevents.*")}
    assert runs == {"ablation", *(f"builtin/{v}/seed0" for v in VARIANTS)}
    acc = EventAccumulator(str(out / "tensorboard" / "ablation"), size_guidance={"images": 0})
    acc.Reload()
    mean = acc.Scalars("ablation/builtin/full/linear_probe_0.1/mean")[0].value
    assert mean == pytest.approx(table["full"]["linear_probe@0.1"]["mean"]) and acc.Tags()["images"] == ["ablation"]
    printed = capsys.readouterr().out
    assert "Ablation on builtin" in printed and "Attribute probes on builtin" in printed
