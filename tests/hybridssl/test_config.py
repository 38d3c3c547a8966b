import pytest

from hybridssl.config import RunConfig, load_config, parse_override, save_config


@pytest.mark.parametrize("preset", ["tiny", "small", "base", "large"])
def test_presets_load_and_round_trip(preset):
    cfg = load_config(preset)
    assert cfg.name == preset
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_large_inherits_from_base():
    base, large = load_config("base"), load_config("large")
    assert large.model.width > base.model.width
    assert large.preprocess.image.size == base.preprocess.image.size


def test_overrides_are_typed():
    cfg = load_config("tiny", ["train.steps=3", "loss.pairs=image-text,audio-image", "model.norm_pix_loss=false",
                               "weighting.options={kappa: 2.5}", "preprocess.audio.n_mels=40"])
    assert cfg.train.steps == 3
    assert cfg.loss.pairs == ("image-text", "audio-image")
    assert cfg.model.norm_pix_loss is False
    assert cfg.weighting.options == {"kappa": 2.5}
    assert cfg.preprocess.audio.n_mels == 40


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ValueError, match="train.stepz"):
        load_config("tiny", ["train.stepz=3"])
    with pytest.raises(ValueError, match="train.steps"):
        load_config("tiny", ["train.steps=many"])
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("nonsense")
    with pytest.raises(ValueError, match="valid presets"):
        load_config("huge")


def test_saved_config_reloads(tmp_path):
    cfg = load_config("tiny", ["train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
