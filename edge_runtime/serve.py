"""A small local JSON API over an ``EdgeModel``, for apps that prefer a service to an in-process
library: an ASGI app (:class:`EdgeApp`) served by uvicorn (``pip install 'hssl[serve]'``), bound to
127.0.0.1 by default. No torch is imported on this path (the server holds only the runtime).

Endpoints (JSON in, JSON out):

- ``GET  /health``   → ``{"modalities", "embed_dim", "backends", "gallery": n | null}``
- ``POST /embed``    ``{"text": str}`` | ``{"image": base64}`` | ``{"audio": base64}`` → ``{"embedding": [E floats]}``
- ``POST /classify`` the same item keys + optional ``"labels": [...]``, ``"top_k"`` → ``{"labels": [[name, score], ...]}``
- ``POST /search``   the same item keys + optional ``"k"`` (needs a gallery) → ``{"hits": [{"id", "score", "metadata"}]}``

Concurrency and bounds. Connections are served concurrently by uvicorn's event loop, so a slow or
idle client never blocks another (``/health`` answers while other requests wait). Inference runs on
one worker thread (the back ends' request objects are not shared across threads) fed by a queue of
at most ``max_pending`` requests; beyond it a request gets 503 at once. uvicorn refuses connections
beyond ``max_connections`` with 503 and drops an idle keep-alive connection after 5 s. A request body
must declare its ``Content-Length`` and stay under ``max_bytes`` (default 8 MiB; else 411/413) and
arrive within ``timeout`` seconds (else 408). Bad input → 400 with ``{"error": message}``; unknown
path → 404; another method → 405; anything else → 500 without internals.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edge_runtime.index import EmbeddingIndex
from edge_runtime.model import EdgeModel
from edge_runtime.schema import BundleError
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


class EdgeApp:
    """The ASGI application of the API above (module docstring)."""

    def __init__(self, model: EdgeModel, gallery: EmbeddingIndex | None = None, max_bytes: int = MAX_REQUEST_BYTES,
                 timeout: float = 10.0, max_pending: int = 256) -> None:
        self.model, self.gallery = model, gallery
        self.max_bytes, self.timeout, self.max_pending = int(max_bytes), float(timeout), int(max_pending)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hssl-infer")
        self.pending = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        code, payload = await self._answer(scope, receive)
        data = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    def health(self) -> dict[str, Any]:
        return {"modalities": list(self.model.modalities), "embed_dim": self.model.embed_dim,
                "backends": self.model.backends, "gallery": None if self.gallery is None else len(self.gallery)}

    async def _answer(self, scope: dict[str, Any], receive: Any) -> tuple[int, dict[str, Any]]:
        method, path = scope["method"], scope["path"]
        if method == "GET":
            return (200, self.health()) if path == "/health" else (404, {"error": f"unknown path {path}"})
        if method != "POST":
            return 405, {"error": f"method {method} is not allowed"}
        if path not in ROUTES:
            return 404, {"error": f"unknown path {path}"}
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if not length.isdigit():
            return 411, {"error": "a Content-Length header is required"}
        if int(length) > self.max_bytes:
            return 413, {"error": f"request body over {self.max_bytes} bytes"}
        try:
            raw = await asyncio.wait_for(_read_body(receive, self.max_bytes), self.timeout)
        except asyncio.TimeoutError:
            return 408, {"error": f"the request body did not arrive within {self.timeout:g} s"}
        except ValueError as e:
            return 413, {"error": str(e)}
        if self.pending >= self.max_pending:
            return 503, {"error": "the server is busy; retry later"}
        self.pending += 1
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise InputError("the request body must be a JSON object")
            result = await asyncio.get_running_loop().run_in_executor(
                self.worker, handle, self.model, self.gallery, path, body)
            return 200, result
        except (InputError, BundleError, json.JSONDecodeError, UnicodeDecodeError) as e:
            return 400, {"error": str(e)}
        except Exception:
            return 500, {"error": "internal error"}
        finally:
            self.pending -= 1


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValueError("the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ValueError(f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class EdgeServer:
    """uvicorn serving an :class:`EdgeApp` on a socket bound at construction (so port 0 is resolved
    before ``serve_forever``). ``shutdown()`` may be called from another thread."""

    def __init__(self, app: EdgeApp, host: str, port: int, max_connections: int) -> None:
        try:
            import uvicorn
        except ImportError:
            raise ModuleNotFoundError("uvicorn is not installed: pip install 'hssl[serve]'") from None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(max_connections)  # clients queue from now on, before the loop starts
        self.server_address = self.socket.getsockname()
        self.stopped = threading.Event()
        self.stopped.set()
        self.app = app
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, http="h11",
                                limit_concurrency=max_connections, timeout_keep_alive=5, interface="asgi3")
        self.server = uvicorn.Server(config)

    def serve_forever(self) -> None:
        self.stopped.clear()
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop ``serve_forever`` (running in another thread) and wait until it has returned."""
        self.server.should_exit = True
        self.stopped.wait(timeout)

    def server_close(self) -> None:
        self.app.worker.shutdown(wait=False, cancel_futures=True)
        self.socket.close()


def make_server(model: EdgeModel, gallery: EmbeddingIndex | None = None, host: str = "127.0.0.1", port: int = 8080,
                max_bytes: int = MAX_REQUEST_BYTES, timeout: float = 10.0, max_connections: int = 128,
                max_pending: int = 256) -> EdgeServer:
    """A server answering the API above (call ``serve_forever()``; port 0 picks a free one)."""
    return EdgeServer(EdgeApp(model, gallery, max_bytes, timeout, max_pending), host, port, max_connections)
