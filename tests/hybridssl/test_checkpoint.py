import pytest
import torch

from hybridssl.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def _optimizer_state():
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.sum().backward()
    opt.step()
    return opt.state_dict()


def test_round_trip(tmp_path):
    w = {"a.weight": torch.randn(3, 2), "b": torch.arange(4)}
    opt = _optimizer_state()
    folder = save_checkpoint(tmp_path / "checkpoints" / "step_000001", model_state=w, state={"step": 1},
                             tokenizer_json="{}", optimizer_state=opt)
    ck = load_checkpoint(folder, with_optimizer=True)
    assert torch.equal(ck["model"]["a.weight"], w["a.weight"]) and ck["state"]["step"] == 1
    got = ck["optimizer"]
    assert torch.equal(got["state"][0]["exp_avg"], opt["state"][0]["exp_avg"])
    assert got["param_groups"][0]["lr"] == 0.1
    torch.optim.AdamW([torch.nn.Parameter(torch.randn(3, 2))]).load_state_dict(got)
    assert latest_checkpoint(tmp_path) == folder
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
    folder = tmp_path / "step_000002"
    save_checkpoint(folder, model_state={"x": torch.zeros(1)}, state={"step": 1})
    save_checkpoint(folder, model_state={"x": torch.ones(1)}, state={"step": 2})
    assert load_checkpoint(folder)["state"]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000002"]


def test_missing_corrupt_and_incomplete_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope")
    folder = save_checkpoint(tmp_path / "c", model_state={"x": torch.zeros(2)}, state={"step": 0})
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(folder, with_optimizer=True)
    (folder / "model.safetensors").write_bytes(b"garbage" * 3)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(folder)
    (folder / "state.json").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        load_checkpoint(folder)


def test_pickle_is_never_used(tmp_path):
    folder = save_checkpoint(tmp_path / "c", model_state={"x": torch.zeros(2)}, state={"step": 0},
                             optimizer_state=_optimizer_state())
    for f in folder.iterdir():
        assert f.suffix in (".safetensors", ".json")


def _flip_one_byte(path, offset_from_end=5):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_tensor_is_detected(tmp_path):
    folder = save_checkpoint(tmp_path / "checkpoints" / "step_000001", model_state={"w": torch.randn(64)},
                             state={"step": 1}, optimizer_state=_optimizer_state())
    _flip_one_byte(folder / "model.safetensors")  # still a valid safetensors file, one weight changed
    with pytest.raises(ValueError, match="model.safetensors does not match its sha256"):
        load_checkpoint(folder)


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path):
    from hybridssl.checkpoint import latest_valid_checkpoint

    root = tmp_path / "checkpoints"
    first = save_checkpoint(root / "step_000001", model_state={"w": torch.zeros(8)}, state={"step": 1})
    second = save_checkpoint(root / "step_000002", model_state={"w": torch.ones(8)}, state={"step": 2})
    assert latest_valid_checkpoint(tmp_path) == second
    _flip_one_byte(second / "state.json", 3)
    with pytest.warns(UserWarning, match="step_000002 is corrupt"):
        assert latest_valid_checkpoint(tmp_path) == first
    (first / "checksums.json").unlink()  # a checkpoint from before checksums: loaded unverified
    with pytest.warns(UserWarning):
        assert latest_valid_checkpoint(tmp_path) == first
