"""A tiny local JSON API over an ``EdgeModel`` (stdlib ``http.server``), for apps that prefer a
service to an in-process library. Single-threaded (one request at a time: the back ends' request
objects are not shared across threads), bound to 127.0.0.1 by default.

Endpoints (JSON in, JSON out):

- ``GET  /health``   → ``{"modalities", "embed_dim", "backends", "gallery": n | null}``
- ``POST /embed``    ``{"text": str}`` | ``{"image": base64}`` | ``{"audio": base64}`` → ``{"embedding": [E floats]}``
- ``POST /classify`` the same item keys + optional ``"labels": [...]``, ``"top_k"`` → ``{"labels": [[name, score], ...]}``
- ``POST /search``   the same item keys + optional ``"k"`` (needs a gallery) → ``{"hits": [{"id", "score", "metadata"}]}``

Bounds: a request body must declare its ``Content-Length`` and stay under ``max_bytes`` (default
8 MiB; else 411/413); a socket idle for ``timeout`` seconds is dropped. Bad input → 400 with
``{"error": message}``; unknown path → 404; anything else → 500 without internals.
"""

from __future__ import annotations

import base64
import binascii
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from edge_runtime.bundle import BundleError
from edge_runtime.index import EmbeddingIndex
from edge_runtime.model import EdgeModel
from edge_runtime.validate import InputError

MAX_REQUEST_BYTES = 8 << 20
ROUTES = ("/embed", "/classify", "/search")


def _item(body: dict[str, Any]) -> tuple[Any, str]:
    """(item, modality) from a request body with exactly one of text / image / audio."""
    keys = [k for k in ("text", "image", "audio") if k in body]
    if len(keys) != 1:
        raise InputError("the request needs exactly one of 'text', 'image' (base64) or 'audio' (base64)")
    key = keys[0]
    if key == "text":
        return body["text"], "text"
    if not isinstance(body[key], str):
        raise InputError(f"'{key}' must be a base64 string")
    try:
        return base64.b64decode(body[key], validate=True), key
    except (binascii.Error, ValueError):
        raise InputError(f"'{key}' is not valid base64") from None


def handle(model: EdgeModel, gallery: EmbeddingIndex | None, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of one POST request to one of ROUTES (raises InputError for bad input)."""
    if path == "/embed":
        item, modality = _item(body)
        return {"embedding": model.embed(item, modality).tolist(), "modality": modality}
    if path == "/classify":
        item, modality = _item(body)
        ranked = model.classify(item, labels=body.get("labels"), modality=modality, top_k=body.get("top_k"))
        return {"labels": [[name, score] for name, score in ranked]}
    if path == "/search":
        if gallery is None:
            raise InputError("the server was started without a gallery")
        item, modality = _item(body)
        hits = gallery.search(model.embed(item, modality), body.get("k", 10))
        return {"hits": [{"id": h.id, "score": h.score, "metadata": h.metadata} for h in hits]}
    raise InputError(f"unknown path {path}")


def make_server(model: EdgeModel, gallery: EmbeddingIndex | None = None, host: str = "127.0.0.1", port: int = 8080,
                max_bytes: int = MAX_REQUEST_BYTES, timeout: float = 10.0) -> HTTPServer:
    """An HTTPServer answering the API above (call ``serve_forever()``; port 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "hssl-edge/1"

        def setup(self) -> None:
            self.timeout = timeout
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            pass

        def _send(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/health":
                return self._send(404, {"error": f"unknown path {self.path}"})
            self._send(200, {"modalities": list(model.modalities), "embed_dim": model.embed_dim,
                             "backends": model.backends, "gallery": None if gallery is None else len(gallery)})

        def do_POST(self) -> None:
            if self.path not in ROUTES:
                return self._send(404, {"error": f"unknown path {self.path}"})
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                return self._send(411, {"error": "a Content-Length header is required"})
            if int(length) > max_bytes:
                self.close_connection = True
                return self._send(413, {"error": f"request body over {max_bytes} bytes"})
            try:
                body = json.loads(self.rfile.read(int(length)) or b"null")
                if not isinstance(body, dict):
                    raise InputError("the request body must be a JSON object")
                self._send(200, handle(model, gallery, self.path, body))
            except (InputError, BundleError, json.JSONDecodeError, UnicodeDecodeError) as e:
                self._send(400, {"error": str(e)})
            except Exception:
                self._send(500, {"error": "internal error"})

    return HTTPServer((host, port), Handler)
