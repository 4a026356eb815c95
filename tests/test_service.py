"""``fewshot serve``: a real uvicorn server on a free loopback port, talked to with a real HTTP client (httpx)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner

from fewshot.cli import main
from fewshot.service import create_app
from fewshot.support import FewShotClassifier, curation

ROOT = Path(__file__).resolve().parents[1]
KEY = "s3cret-key"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def ix(tmp_path, tiny_text_model_dir):
    """An index over the tiny random BERT with two classes (a support text is its own class's nearest)."""
    path = tmp_path / "ix"
    assert invoke("index", "create", path, "--encoder", tiny_text_model_dir, "--metric", "cosine").exit_code == 0
    assert invoke("index", "add", path, "--label", "greet", "hello there", "hi friend").exit_code == 0
    assert invoke("index", "add", path, "--label", "travel", "book a flight").exit_code == 0
    return path


@pytest.fixture
def serve():
    """``serve(DIR, api_key=None)``: the app on a uvicorn server in a background thread, on a port the OS
    chose; returns an httpx client bound to it. Every server is stopped at teardown."""
    running = []

    def start(path, api_key=None) -> httpx.Client:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(create_app(path, api_key=api_key), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:  # readiness, not timing: the loop ends as soon as it listens
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        client = httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30)
        running.append(client)
        return client

    yield start
    for item in reversed(running):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            server, thread = item
            server.should_exit = True
            thread.join(30)


def labels_of(r: httpx.Response) -> list:
    assert r.status_code == 200, r.text
    return [p["label"] for p in r.json()["predictions"]]


def counts(client) -> dict:
    r = client.get("/describe")
    assert r.status_code == 200, r.text
    return {c["label"]: c["count"] for c in r.json()["classes"]}


def test_predict_add_remove_describe(ix, serve):
    c = serve(ix)
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["n_classes"] == 2
    assert labels_of(c.post("/predict", json={"texts": ["book a flight", "hello there"]})) == ["travel", "greet"]
    r = c.post("/predict", json={"texts": ["book a flight"], "top_k": 2}).json()
    top = r["predictions"][0]["top_k"]
    assert [t["label"] for t in top] == ["travel", "greet"] and top[0]["score"] >= top[1]["score"]
    assert r["predictions"][0]["score"] == top[0]["score"] and "id" not in r["predictions"][0]
    # add: a new class, seen by the next predict; an existing label grows (running mean)
    r = c.post("/add", json={"texts": ["rain tomorrow?", "hey"], "labels": ["weather", "greet"]})
    assert r.status_code == 200, r.text
    assert r.json()["new_classes"] == 1 and r.json()["updated_classes"] == 1 and r.json()["n_classes"] == 3
    assert r.json()["generation"] == h["generation"] + 1
    assert labels_of(c.post("/predict", json={"texts": ["rain tomorrow?"]})) == ["weather"]
    assert counts(c) == {"greet": 3, "travel": 1, "weather": 1}
    # replace resets a class to the new examples
    assert c.post("/add", json={"texts": ["hiya"], "labels": ["greet"], "replace": True}).status_code == 200
    assert counts(c) == {"greet": 1, "travel": 1, "weather": 1}
    r = c.post("/remove", json={"labels": ["weather"]})
    assert r.status_code == 200 and r.json()["n_classes"] == 2
    assert counts(c) == {"greet": 1, "travel": 1}
    assert labels_of(c.post("/predict", json={"texts": ["rain tomorrow?"]})) != ["weather"]
    assert not (ix / "predictions.jsonl").exists()  # nothing asked for the log


def test_logged_predict_then_correct_and_confirm(ix, serve):
    c = serve(ix)
    r = c.post("/predict", json={"texts": ["rain tomorrow?", "book a flight"], "log": True})
    assert r.status_code == 200, r.text
    ids = [p["id"] for p in r.json()["predictions"]]
    assert ids == [0, 1]
    r = c.post("/predict?log=true", json={"texts": ["hello there"]})  # the query-string form
    assert [p["id"] for p in r.json()["predictions"]] == [2]
    log = curation.prediction_log(ix)
    assert [e["query"] for e in log.read()] == ["rain tomorrow?", "book a flight", "hello there"]
    r = c.post("/correct", json={"id": 0, "label": "weather"})
    assert r.status_code == 200, r.text
    assert r.json()["query"] == "rain tomorrow?" and r.json()["n_classes"] == 3
    # both the index and the log hold it
    assert counts(c) == {"greet": 2, "travel": 1, "weather": 1}
    assert log.get(0)["feedback"] == "correction" and log.get(0)["true_label"] == "weather"
    assert labels_of(c.post("/predict", json={"texts": ["rain tomorrow?"]})) == ["weather"]
    r = c.post("/confirm", json={"id": 1})
    assert r.status_code == 200 and r.json()["label"] == "travel"
    assert log.get(1)["feedback"] == "confirmation"
    # reviewed once only; an unknown id is refused; nothing changes
    before = (ix / "manifest.json").read_bytes()
    r = c.post("/correct", json={"id": 0, "label": "greet"})
    assert r.status_code == 400 and "already got a correction" in r.json()["error"]
    r = c.post("/correct", json={"id": 99, "label": "greet"})
    assert r.status_code == 400 and "no prediction id 99" in r.json()["error"]
    assert (ix / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("route, body, status, message", [
    ("/add", {"texts": ["x"]}, 422, "labels: Field required"),
    ("/add", {"texts": "hello", "labels": ["a"]}, 422, "texts: Input should be a valid list"),
    ("/add", {"texts": ["x"], "labels": ["a"], "colour": 1}, 422, "colour: Extra inputs are not permitted"),
    ("/add", {"texts": ["   "], "labels": ["a"]}, 400, "expected a text with some non-whitespace character"),
    ("/add", {"texts": ["x", "y"], "labels": ["a"]}, 400, "one label per text, got 2 texts and 1 labels"),
    ("/add", {"texts": ["x"], "labels": [" "]}, 400, "expected a class label with some non-whitespace"),
    ("/add", {"texts": ["x"], "labels": ["greet "]}, 400, "differ only by surrounding whitespace"),
    ("/add", {"texts": [], "labels": []}, 400, "expected at least one text"),
    ("/remove", {"labels": ["nope"]}, 400, "unknown class(es) ['nope']"),
    ("/remove", {"labels": []}, 400, "expected at least one class name"),
    ("/predict", {"texts": ["x"], "top_k": 0}, 400, "top_k must be from 1 to the number of classes (2), got 0"),
    ("/predict", {"texts": ["x"], "top_k": 3, "log": True}, 400, "top_k must be from 1"),
    ("/predict", {"texts": ["ok", ""], "log": True}, 400, "item 1: expected a text with some non-whitespace"),
    ("/predict", {"texts": []}, 400, "expected at least one text"),
    ("/predict", {"texts": ["x"], "top_k": "2"}, 422, "top_k: Input should be a valid integer"),
    ("/correct", {"id": 0, "label": "greet"}, 400, "no prediction id 0"),
    ("/correct", {"id": 0}, 422, "label: Field required"),
])
def test_bad_bodies_are_refused_and_change_nothing(ix, serve, route, body, status, message):
    c = serve(ix)
    before = (ix / "manifest.json").read_bytes()
    files = sorted(p.name for p in ix.iterdir())
    r = c.post(route, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert (ix / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in ix.iterdir()) == files  # no log created, no data file left behind


def test_not_json_is_a_422(ix, serve):
    c = serve(ix)
    r = c.post("/add", content=b"texts=x", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["error"]
    assert c.get("/nowhere").status_code == 404 and "error" in c.get("/nowhere").json()


def test_a_folder_rebuilt_with_another_encoder_asks_for_a_restart(ix, serve, tmp_path, tiny_image_encoder):
    c = serve(ix)
    other = tmp_path / "other"
    FewShotClassifier(tiny_image_encoder).create(other)
    for f in sorted(other.iterdir(), key=lambda f: f.name == "manifest.json"):  # the manifest last, atomically
        shutil.copy(f, ix / f".{f.name}.tmp")
        os.replace(ix / f".{f.name}.tmp", ix / f.name)
    before = (ix / "manifest.json").read_bytes()
    for route, body in (("/predict", {"texts": ["book a flight"]}), ("/add", {"texts": ["x"], "labels": ["y"]})):
        r = c.post(route, json=body)
        assert r.status_code == 503 and "restart `fewshot serve`" in r.json()["error"]
    assert (ix / "manifest.json").read_bytes() == before


def test_api_key_guards_writes_only(ix, serve):
    c = serve(ix, api_key=KEY)
    before = (ix / "manifest.json").read_bytes()
    body = {"texts": ["rain tomorrow?"], "labels": ["weather"]}
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = c.post("/add", json=body, headers=headers)
        assert r.status_code == 401 and "needs the API key" in r.json()["error"], headers
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/add", json={"bad": 1}).status_code == 401  # the key is checked before the body
    assert c.post("/remove", json={"labels": ["greet"]}).status_code == 401
    assert c.post("/predict", json={"texts": ["x"], "log": True}).status_code == 401
    assert c.post("/predict?log=true", json={"texts": ["x"]}).status_code == 401
    assert (ix / "manifest.json").read_bytes() == before and not (ix / "predictions.jsonl").exists()
    # reads stay open
    assert labels_of(c.post("/predict", json={"texts": ["book a flight"]})) == ["travel"]
    assert c.get("/describe").status_code == 200 and c.get("/health").status_code == 200
    assert c.post("/add", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert c.post("/remove", json={"labels": ["weather"]}, headers={"X-API-Key": KEY}).status_code == 200
    assert counts(c) == {"greet": 2, "travel": 1}


def test_serve_defaults_to_one_thread_like_index(monkeypatch):
    import faiss
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("FEWSHOT_THREADS", raising=False)
    try:
        torch.set_num_threads(2)
        r = CliRunner().invoke(main, ["serve", "--help"])
        assert r.exit_code == 0 and "--api-key" in r.output and "127.0.0.1" in r.output
        assert torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
        assert CliRunner().invoke(main, ["--threads", "2", "serve", "--help"]).exit_code == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_serve_refuses_a_folder_without_an_index(tmp_path):
    r = CliRunner().invoke(main, ["serve", str(tmp_path)])
    assert r.exit_code == 2 and "not a fewshot index folder" in r.output


def test_cli_serve_binds_loopback_and_sees_cli_writes(ix):
    """The real command in its own process: 127.0.0.1 by default; a `fewshot index add` from another process
    while it runs is seen by its next predict."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("FEWSHOT_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "fewshot.cli", "serve", str(ix), "--port", "0"], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in proc.stderr:  # ends when the process does
            lines.append(line)
            m = re.search(r"Uvicorn running on http://([\d.]+):(\d+)", line)
            if m:
                break
        assert m, "".join(lines)
        assert m.group(1) == "127.0.0.1"
        assert any("serving" in ln and "2 classes" in ln and "writes are open" in ln for ln in lines)
        with httpx.Client(base_url=f"http://127.0.0.1:{m.group(2)}", timeout=60) as c:
            g = c.get("/health").json()["generation"]
            assert labels_of(c.post("/predict", json={"texts": ["rain tomorrow?"]})) != ["weather"]
            r = invoke("index", "add", ix, "--label", "weather", "rain tomorrow?")
            assert r.exit_code == 0, r.output
            assert labels_of(c.post("/predict", json={"texts": ["rain tomorrow?"]})) == ["weather"]
            assert c.get("/health").json() | {"encoder": None} == {"status": "ok", "generation": g + 1,
                                                                     "n_classes": 3, "encoder": None}
            # and the server's own write is seen by the CLI
            assert c.post("/add", json={"texts": ["play jazz"], "labels": ["music"]}).status_code == 200
            out = invoke("index", "list", ix, "--json").output
            assert '"music"' in out
    finally:
        proc.terminate()
        proc.wait(30)


def test_bench_serve_readers_beside_a_writer_lose_nothing(ix, serve):
    """bin/bench-serve's load phase and its after-check, on the tiny index for 2 s."""
    import bench_serve

    c = serve(ix)
    queries = [("book a flight", "travel"), ("hello there", "greet")]
    ld = bench_serve.load(str(c.base_url), queries, ["rain tomorrow?", "play jazz", "next song"], readers=2,
                          writers=1, seconds=2, seed=0)
    assert ld["all"]["errors"] == 0 and ld["reader"]["requests"] > 0 and ld["writer"]["requests"] > 0
    assert ld["reader"]["accuracy"] == 1.0  # support texts are their own class's nearest
    assert len(ld["acked"]) == ld["writer"]["requests"] and len(set(ld["acked"])) == len(ld["acked"])
    after = bench_serve.check_after(ix, 2, ld["acked"], {"greet", "travel"})
    assert after == {"n_classes": 2 + len(ld["acked"]), "expected": 2 + len(ld["acked"]), "missing": [],
                     "intents_intact": True, "ok": True}
    lost = bench_serve.check_after(ix, 2, ld["acked"] + ["bench-never-added"], {"greet", "travel"})
    assert not lost["ok"] and lost["missing"] == ["bench-never-added"]
    report = {"n_intents": 2, "shots": 1, "readers": 2, "writers": 1, "cold_start_s": 1.0,
              "warm": ld["reader"], "load": ld, "after": after}
    md = bench_serve.markdown(report, "bin/bench-serve --seconds 2")
    assert "**nothing lost**" in md and "| load: 2 readers (predict) |" in md
    assert "LOST: ['bench-never-added']" in bench_serve.markdown({**report, "after": lost}, "x")
