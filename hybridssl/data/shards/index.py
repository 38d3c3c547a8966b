"""A shard folder: its ``index.json`` (:class:`ShardSet`, :func:`open_shards`) and reading the members of one tar."""

from __future__ import annotations

import glob
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.bundle import sha256_file
from hybridssl.data.shards.format import FORMAT, INDEX, VERSION


# ------------------------------------------------------------------------------ the shard set
@dataclass
class ShardSet:
    """The index of a shard folder and the shard files a spec selected (in index order)."""

    root: Path
    index: dict[str, Any]
    files: list[Path]
    counts: list[int]

    @property
    def samples(self) -> int:
        return sum(self.counts)


def read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable shard index: {e}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("shards"), list):
        raise ValueError(f"{path} is not an hssl shard index (format {FORMAT!r}); write shards with `hssl shard`")
    if index.get("version", 0) > VERSION:
        raise ValueError(f"{path} has shard format version {index.get('version')}; this hssl reads up to {VERSION}")
    return index


def open_shards(spec: str | Path, verify: bool = False) -> ShardSet:
    """``DIR`` (with index.json), ``DIR/index.json`` or a glob of ``.tar`` files next to their index.json."""
    text = str(spec)
    if not text:
        raise ValueError("empty shards spec: give a folder written by `hssl shard` or a glob of its .tar files")
    path = Path(text).expanduser()
    if glob.has_magic(text):
        matched = sorted(Path(p).resolve() for p in glob.glob(str(path)))
        if not matched:
            raise FileNotFoundError(f"no shard matches {text}")
        root = matched[0].parent
        wanted = {p.name for p in matched}
    else:
        root = path.parent if path.name == INDEX else path
        wanted = None
    if not (root / INDEX).is_file():
        raise FileNotFoundError(f"no {INDEX} in {root}: write shards with `hssl shard DATA_SPEC {root}`")
    index = read_index(root / INDEX)
    entries = [e for e in index["shards"] if wanted is None or e["file"] in wanted]
    if wanted is not None and len(entries) != len(wanted):
        unknown = sorted(wanted - {e["file"] for e in entries})
        raise ValueError(f"{unknown[:3]} matched {text} but are not listed in {root / INDEX}")
    files = [root / e["file"] for e in entries]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"shard(s) {', '.join(missing[:5])} listed in {root / INDEX} are missing")
    if verify:
        for e, f in zip(entries, files):
            if sha256_file(f) != e["sha256"]:
                raise ValueError(f"shard {f} does not match the sha256 in {INDEX} (corrupt or replaced)")
    return ShardSet(root, index, files, [int(e["count"]) for e in entries])


# ------------------------------------------------------------------------------ reading tars
def split_member(name: str) -> tuple[str, str]:
    key, _, ext = name.partition(".")
    return key, ext


def scan_tar(path: Path) -> tuple[list[tuple[str, dict[str, tuple[int, int]]]], str | None]:
    """Random-access table of one tar: [(key, {ext: (data offset, size)})] of its COMPLETE samples
    (all members inside the file), and the error that stopped the scan early (None if none)."""
    size = path.stat().st_size
    samples: dict[str, dict[str, tuple[int, int]]] = {}
    error = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    error = f"member {info.name} runs past the end of the file"
                    break
                key, ext = split_member(info.name)
                samples.setdefault(key, {})[ext] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError) as e:
        error = f"{type(e).__name__}: {e}"
    table = [(k, m) for k, m in samples.items() if "json" in m]
    if table and not _complete(path, table[-1][1]):  # a cut tar: its last sample may lack members its json lists
        table.pop()
    return table, error


def _complete(path: Path, members: dict[str, tuple[int, int]]) -> bool:
    """Whether a sample holds every member its .json lists (version 2; a version-1 json comes last)."""
    offset, length = members["json"]
    try:
        with path.open("rb") as f:
            f.seek(offset)
            listed = json.loads(f.read(length)).get("members") or ()
    except (OSError, ValueError, AttributeError):
        return False
    return set(listed) <= set(members)
