"""The files an ONNX graph reads besides itself: external-data ``location``s, found without ``onnx``.

A ``.onnx`` file is a protobuf ``ModelProto``. A tensor whose data live in another file says so in
``TensorProto.external_data`` (field 13: ``{"location": relative path, "offset", "length"}``), and ONNX
Runtime / OpenVINO open that path next to the model. A bundle must list and hash every such file, so
the reader needs the locations *before* a back end opens anything; this module walks the protobuf
wire format (varint / 64-bit / length-delimited / 32-bit fields) over exactly the messages that can
hold tensors:

    ModelProto.graph (7), .functions (25: FunctionProto.node 7)
    GraphProto.node (1), .initializer (5), .sparse_initializer (15: SparseTensorProto.values 1, .indices 2)
    NodeProto.attribute (5)
    AttributeProto.t (5), .g (6), .tensors (10), .graphs (11), .sparse_tensor (22), .sparse_tensors (23)
    TensorProto.external_data (13: StringStringEntryProto key 1, value 2)

Raw tensor bytes are skipped by length, never copied, so a 100 MB graph is scanned in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

# message kind → {field number: kind of the embedded message}
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
}
MAX_DEPTH = 64


class OnnxParseError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise OnnxParseError("truncated or overlong varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field number, wire type, value)``: length-delimited values as memoryviews, others as ints."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        value: int | memoryview
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = 0, i + 8
        elif wire == 5:
            value, i = 0, i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise OnnxParseError("a length-delimited field runs past the end of its message")
            value, i = buf[i : i + n], i + n
        else:
            raise OnnxParseError(f"unsupported protobuf wire type {wire}")
        if i > len(buf):
            raise OnnxParseError("a field runs past the end of its message")
        yield field, wire, value


def _external_location(tensor: memoryview) -> str | None:
    for field, wire, value in _fields(tensor):
        if field == 13 and wire == 2 and isinstance(value, memoryview):
            entry = {f: bytes(v).decode("utf-8", "replace") for f, w, v in _fields(value) if w == 2}
            if entry.get(1) == "location":
                return entry.get(2, "")
    return None


def _walk(buf: memoryview, kind: str, depth: int, found: set[str]) -> None:
    if depth > MAX_DEPTH:
        raise OnnxParseError(f"graphs nested deeper than {MAX_DEPTH} levels")
    if kind == "tensor":
        location = _external_location(buf)
        if location is not None:
            found.add(location)
        return
    children = _CHILDREN[kind]
    for field, wire, value in _fields(buf):
        if wire == 2 and field in children and isinstance(value, memoryview):
            _walk(value, children[field], depth + 1, found)


def external_data_files(model: Path) -> set[str]:
    """Every external-data location the ONNX graph at ``model`` refers to (empty for a self-contained
    graph); :class:`OnnxParseError` when the file is not a well-formed ``ModelProto``."""
    found: set[str] = set()
    _walk(memoryview(Path(model).read_bytes()), "model", 0, found)
    return found
