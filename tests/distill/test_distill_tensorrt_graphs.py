"""The distilled students' graphs are TensorRT-buildable: MobileViT (whose ``F.interpolate`` broke
TensorRT builds, timm issue #1373), the text student's token inputs (int64 in the bundle, int32 for
the engine) and the audio CNN pass the graph check that runs before any engine is built."""

from __future__ import annotations

import pytest

from edge_runtime.schema import tower_io
from export.api import export_run
from export.tensorrt_graph import BatchProfile, axis_ranges, check_graph, int32_inputs
from hybridssl.runs import load_run


@pytest.mark.parametrize("image_size", [64, 72])   # 72: MobileViT resizes its odd 9×9 feature map to 10×10 and back
def test_student_graphs_pass_the_tensorrt_check(teacher_dir, tmp_path, tiny_distill, image_size):
    from distill.api import distill_run

    student = tmp_path / "student"
    distill_run(teacher_dir, student, student="mobilevit", image_size=image_size, overrides=tiny_distill)
    out = tmp_path / "bundle"
    export_run(student, out, "onnx", eval_size=32, threads=1, max_drop=100.0)
    run = load_run(student)
    for m in run.model.modalities:
        io = tower_io(m, run.spec, int(run.cfg.model.embed_dim))
        graph = int32_inputs(out / f"{m}.onnx", tmp_path / f"{m}.trt.onnx")
        check = check_graph(graph, io, BatchProfile(1, 8, 32), axis_ranges(m, run.spec))
        assert check["ok"], (m, check["problems"])
    if image_size == 72:
        from export.onnx_graph import op_types

        assert "Resize" in op_types(out / "image.onnx")
