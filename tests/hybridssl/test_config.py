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


# ----------------------------------------------------------------------------- hostile or broken config files
@pytest.mark.parametrize("text, message", [
    ("train: !!python/object/apply:os.system ['echo pwned']\n", "not a valid config file"),
    ("train: [1, 2\n", r"not a valid config file \(line"),
    ("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_bad_config_files_are_one_line_value_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_config(str(path))
    assert "\n" not in str(info.value)


def test_a_circular_base_chain_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    for name in ("a.yaml", "self.yaml"):
        with pytest.raises(ValueError, match="circular"):
            load_config(str(tmp_path / name))
    (tmp_path / "ok.yaml").write_text("base: tiny\ntrain: {steps: 3}\n")
    (tmp_path / "child.yaml").write_text("base: ok.yaml\n")  # relative to the file, not the cwd
    assert load_config(str(tmp_path / "child.yaml")).train.steps == 3


def test_an_oversized_config_file_is_refused(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("x: " + "y" * (2 << 20) + "\n")
    with pytest.raises(ValueError, match="too large"):
        load_config(str(path))


@pytest.mark.parametrize("override, key", [
    ("train.batch_size=0", "train.batch_size"), ("train.batch_size=-5", "train.batch_size"),
    ("train.lr=inf", "train.lr"), ("train.lr=.nan", "train.lr"), ("train.lr=0", "train.lr"),
    ("train.steps=0", "train.steps"), ("train.accum_steps=0", "train.accum_steps"),
    ("loss.temperature=0", "loss.temperature"), ("train.betas=[0.9,1.5]", "train.betas"),
    ("loss.caption_negatives=-1", "loss.caption_negatives"), ("loss.caption_negatives=99", "loss.caption_negatives"),
])
def test_values_no_run_can_train_with_are_refused(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config("tiny", [override])


def test_an_override_that_is_not_yaml_is_a_value_error():
    with pytest.raises(ValueError, match="not a YAML scalar"):
        load_config("tiny", ["train.lr=!!python/name:os.system"])
