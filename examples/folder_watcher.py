"""A minimal device app on the edge runtime: watch a folder, index new images (and sounds), and
answer text queries typed on stdin with the best-matching files.

    python examples/folder_watcher.py BUNDLE FOLDER [--gallery gallery/] [--interval 2] [-k 3]

Only numpy, Pillow, soundfile, tokenizers and an inference back end are needed (no torch). The
folder is rescanned every ``--interval`` seconds in a background thread; the gallery is saved
after every change when ``--gallery`` is given (and reloaded at start, so restarts are cheap).
Each stdin line is a query; results print as ``rank  score  file``. EOF (Ctrl-D) quits.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from edge_runtime.index import EmbeddingIndex, index_files, scan_media
from edge_runtime.items import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from edge_runtime.model import EdgeModel
from edge_runtime.validate import InputError


class Watcher:
    """Holds the model and the gallery; ``scan`` and ``query`` are safe to call from two threads."""

    def __init__(self, bundle: Path, folder: Path, gallery_path: Path | None, threads: int | None) -> None:
        self.model = EdgeModel.load(bundle, threads=threads)
        self.folder = folder
        self.gallery_path = gallery_path
        self.lock = threading.Lock()
        self.gallery = EmbeddingIndex(self.model.embed_dim, self.model.fingerprint)
        if gallery_path and (gallery_path / "index.json").exists():
            saved = EmbeddingIndex.load(gallery_path)
            if saved.bundle == self.model.fingerprint:
                self.gallery = saved
        self.suffixes = IMAGE_SUFFIXES | (AUDIO_SUFFIXES if "audio" in self.model.modalities else frozenset())
        self.skipped: dict[str, tuple[float, int]] = {}  # refused file → (mtime, size) when refused

    def _stamp(self, p: Path) -> tuple[float, int]:
        try:
            st = p.stat()
        except OSError:  # removed meanwhile
            return 0.0, -1
        return st.st_mtime, st.st_size

    def scan(self) -> int:
        """Index files not seen yet (a refused file is retried once it changes, e.g. finished copying)."""
        paths = [p for p in scan_media(self.folder, self.suffixes)
                 if self.skipped.get(str(p.relative_to(self.folder))) != self._stamp(p)]
        with self.lock:
            before = len(self.gallery)
            _, skipped = index_files(self.model, paths, self.folder, index=self.gallery)
            self.skipped.update({pid: self._stamp(self.folder / pid) for pid in skipped})
            added = len(self.gallery) - before
            if added and self.gallery_path:
                self.gallery.save(self.gallery_path)
        for pid, reason in skipped.items():
            print(f"skipped {pid}: {reason}", file=sys.stderr)
        return added

    def query(self, text: str, k: int) -> list[tuple[str, float]]:
        with self.lock:
            hits = self.gallery.search(self.model.embed_text(text), k)
        return [(h.id, h.score) for h in hits]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--gallery", type=Path, default=None)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        watcher = Watcher(args.bundle, args.folder, args.gallery, args.threads)
        print(f"indexed {watcher.scan()} files from {args.folder}; type a query (Ctrl-D quits)", flush=True)
    except ValueError as e:  # BundleError / InputError / BackendError: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(args.interval):
            added = watcher.scan()
            if added:
                print(f"[indexed {added} new files]", flush=True)

    threading.Thread(target=poll, daemon=True).start()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            for rank, (pid, score) in enumerate(watcher.query(line.strip(), args.k), 1):
                print(f"{rank}  {score:+.3f}  {pid}", flush=True)
        except InputError as e:
            print(f"error: {e}", flush=True)
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
