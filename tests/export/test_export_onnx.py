"""One ONNX graph per tower: signature, dynamic batch, checker, IR version, both exporters."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from export.backends import OrtRunner
from export.onnx_graph import (
    MAX_IR_VERSION,
    check_onnx,
    export_onnx,
    op_types,
    optimize_onnx,
    rename_value,
    save_checked,
    topological_sort,
)
from export.towers import (
    MaskedTower,
    embed_dim_of,
    example_feeds,
    interface_args,
    torch_embed,
    torch_to_feeds,
    tower_io,
    tower_module,
)
from hybridssl.runs import load_run

# Two float32 implementations (torch vs ONNX Runtime, each with the kernels of the CPU it runs on:
# AVX2, AVX-512, AMX, NEON sum in different orders) differ by rounding, ≈ ε·√K per layer of
# accumulation length K (ε = 1.2e-7). An element of a unit-norm embedding of this tiny model (K ≤ 256,
# ≤ 8 layers) moves by < ~2e-5 that way; 1e-4 leaves margin on any CPU, while a wrong graph (a dropped
# op, a wrong mask) moves elements by > 1e-2.
FP32_PARITY = 1e-4


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run)


def test_tower_io_signature(run):
    io = tower_io("audio", run.spec, 16)
    assert [t.to_dict() for t in io.inputs] == [{"name": "log_mel", "shape": ["batch", 1, 32, 51], "dtype": "float32"}]
    assert io.output_names == ["embedding"]
    assert embed_dim_of(run.model, "text", run.spec, run.tokenizer) == 16
    with pytest.raises(ValueError, match="unknown modality"):
        tower_io("video", run.spec, 16)


def test_tower_module_is_the_model_embedding(run):
    feeds = example_feeds("text", run.spec, run.tokenizer, batch=2)
    assert feeds["attention_mask"].dtype == np.int64 and feeds["attention_mask"][0, -1] == 0  # padded
    ids, attn = interface_args(feeds)
    with torch.no_grad():
        want = run.model.embed("text", ids, attn).numpy()
    np.testing.assert_allclose(torch_embed(run.model, "text", feeds), want, atol=1e-6)
    back = torch_to_feeds("text", ids, attn)
    assert all(np.array_equal(back[k], feeds[k]) for k in feeds)
    assert isinstance(tower_module(run.model, "text"), MaskedTower)


@pytest.mark.parametrize("m", ["image", "text", "audio"])
def test_legacy_export_dynamic_batch_and_parity(run, tmp_path, m):
    io = tower_io(m, run.spec, 16)
    raw = export_onnx(tower_module(run.model, m), io, example_feeds(m, run.spec, run.tokenizer), tmp_path / "raw.onnx")
    opt = optimize_onnx(raw, tmp_path / "opt.onnx")
    for path in (raw, opt):
        check_onnx(path, io)
        model = onnx.load(str(path))
        assert model.ir_version <= MAX_IR_VERSION
        assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
        runner = OrtRunner(path)
        for batch in (1, 9):                                     # traced with batch 2
            feeds = example_feeds(m, run.spec, run.tokenizer, batch=batch, seed=batch)
            np.testing.assert_allclose(runner(feeds), torch_embed(run.model, m, feeds), atol=FP32_PARITY)
    assert len(onnx.load(str(opt)).graph.node) < len(onnx.load(str(raw)).graph.node)


def test_dynamo_exporter_names_the_output_embedding(run, tmp_path):
    io = tower_io("text", run.spec, 16)
    path = export_onnx(tower_module(run.model, "text"), io, example_feeds("text", run.spec, run.tokenizer),
                       tmp_path / "t.onnx", exporter="dynamo")
    check_onnx(path, io)
    assert max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")) == 18
    feeds = example_feeds("text", run.spec, run.tokenizer, batch=4, seed=3)
    np.testing.assert_allclose(OrtRunner(path)(feeds), torch_embed(run.model, "text", feeds), atol=FP32_PARITY)


def test_bad_exporter_options(run, tmp_path):
    io = tower_io("image", run.spec, 16)
    feeds = example_feeds("image", run.spec, run.tokenizer)
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(tower_module(run.model, "image"), io, feeds, tmp_path / "x.onnx", exporter="jit")
    with pytest.raises(ValueError, match="opset must be at least 17"):
        export_onnx(tower_module(run.model, "image"), io, feeds, tmp_path / "x.onnx", opset=13)
    with pytest.raises(ValueError, match="the model has no 'audio' tower"):
        tower_module(_ImageOnly(), "audio")


class _ImageOnly(torch.nn.Module):
    modalities = ("image",)


def _tiny_graph(nodes, ir_version=14):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph(nodes, "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    return model


def test_save_checked_pins_the_ir_version_and_sorts(tmp_path):
    nodes = [helper.make_node("Relu", ["h"], ["y"], name="second"), helper.make_node("Neg", ["x"], ["h"], name="first")]
    model = _tiny_graph(nodes)
    with pytest.raises(onnx.checker.ValidationError):
        save_checked(model, tmp_path / "bad.onnx")          # not topologically sorted
    topological_sort(model)
    assert [n.name for n in model.graph.node] == ["first", "second"]
    save_checked(model, tmp_path / "ok.onnx")
    assert onnx.load(str(tmp_path / "ok.onnx")).ir_version == MAX_IR_VERSION
    out = OrtRunner(tmp_path / "ok.onnx")({"x": np.array([[1.0, -2.0]], np.float32)})
    np.testing.assert_array_equal(out, [[0.0, 2.0]])
    assert op_types(tmp_path / "ok.onnx") == ["Neg", "Relu"]
    cyclic = _tiny_graph([helper.make_node("Neg", ["y"], ["h"]), helper.make_node("Relu", ["h"], ["y"])])
    with pytest.raises(ValueError, match="cycle or undefined inputs"):
        topological_sort(cyclic)


def test_rename_value_everywhere():
    model = _tiny_graph([helper.make_node("Neg", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])])
    rename_value(model, "h", "hidden")
    rename_value(model, "y", "embedding")
    assert [list(n.output) for n in model.graph.node] == [["hidden"], ["embedding"]]
    assert list(model.graph.node[1].input) == ["hidden"] and model.graph.output[0].name == "embedding"


def test_check_onnx_refuses_a_wrong_signature(ort_bundle, run):
    out, _ = ort_bundle
    with pytest.raises(ValueError, match="do not match the bundle signature"):
        check_onnx(out / "image.onnx", tower_io("image", run.spec, 32))
