"""`hssl serve` under load on 127.0.0.1: concurrent clients all answered, a slow client blocks no one,
the queue is bounded. Bounded in time (a few seconds on 2 cores)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge_runtime.serve import make_server

pytest.importorskip("uvicorn", reason="uvicorn is not installed: pip install 'hssl[serve]'")


@pytest.fixture
def served(edge_model):
    def start(**kw):
        srv = make_server(edge_model, None, port=0, **kw)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        started.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", srv.server_address[1]

    started: list = []
    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def _post(url: str, body: dict, timeout: float = 30) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_32_concurrent_clients_are_all_answered(served):
    url, _ = served()
    texts = [f"a {c} circle number {i}" for i in range(160) for c in ("red",)]
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(lambda t: _post(url + "/embed", {"text": t}), texts))
    assert codes == [200] * len(texts)  # no reset, no refusal


def test_a_slow_client_blocks_no_one(served):
    url, port = served(timeout=2)
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\n")            # headers still coming...
    body = socket.create_connection(("127.0.0.1", port))
    body.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")  # a body that never ends
    t0 = time.perf_counter()
    with urllib.request.urlopen(url + "/health", timeout=5) as r:
        assert json.loads(r.read())["embed_dim"] == 16
    assert time.perf_counter() - t0 < 2.0
    body.settimeout(10)
    assert b" 408 " in body.recv(4096)                              # the stalled body times out with 408
    slow.close()
    body.close()


def test_the_inference_queue_is_bounded(served, edge_model):
    """With room for one pending request, a burst gets 503 for the excess at once, never a reset."""
    url, _ = served(max_pending=1)
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: _post(url + "/embed", {"text": f"a red square {i}"}), range(48)))
    assert set(codes) <= {200, 503} and 200 in codes


def test_without_uvicorn_serve_says_which_extra(edge_model, monkeypatch, edge_bundle, capsys):
    import sys

    from cli.main import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of uvicorn now fails
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'hssl\[serve\]'"):
        make_server(edge_model, port=0)
    assert main(["serve", str(edge_bundle), "--port", "0", "--threads", "1"]) == 2
    assert "pip install 'hssl[serve]'" in capsys.readouterr().out
