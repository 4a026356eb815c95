"""SupportStore: atomic generations survive SIGKILL, the lock loses no update, corruption is reported."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fewshot.store import StoreError, SupportStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Commits two generations, measures how many profiler events one write takes, then SIGKILLs
# itself at a random one of those events inside the next write: a kill at a random instant of
# the write (between a rename and the manifest swap, in the middle of an fsync'ed file, ...).
# Each generation is self-consistent: n vectors, and 200_000 + n int64s all equal to n.
WRITER = textwrap.dedent("""
    import os, random, signal, sys
    import numpy as np
    from fewshot.index import SupportIndex
    from fewshot.store import SupportStore

    store, seed = SupportStore(sys.argv[1]), int(sys.argv[2])
    n = store.read()[0]["n"] if store.exists() else 0

    def write(n):
        ix = SupportIndex(64, "euclidean")
        ix.add(np.arange(n), np.full((n, 64), n, np.float32))
        store.write({"n": n}, {"index": ("faiss", ix.to_bytes()),
                               "state": ("bin", np.full(200_000 + n, n, np.int64).tobytes())})

    for _ in range(2):
        n += 1
        write(n)
        print(n, flush=True)
    events = [0]

    def count(frame, event, arg):
        events[0] += 1

    n += 1
    sys.setprofile(count)
    write(n)
    sys.setprofile(None)
    print(n, flush=True)
    kill_at = random.Random(seed).randrange(events[0])

    def killer(frame, event, arg):
        events[0] -= 1
        if events[0] <= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(killer)
    write(n + 1)
    sys.setprofile(None)
    print("not killed", flush=True)
""")

# Increments a counter under the folder lock, ``rounds`` times.
INCREMENTER = textwrap.dedent("""
    import sys
    from fewshot.store import SupportStore

    path, who, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for _ in range(rounds):
        with SupportStore.locked(path) as store:
            meta, blobs = store.read()
            meta["count"] += 1
            meta["log"].append(who)
            store.write(meta, {"data": ("bin", blobs["data"] + who.encode())})
""")


def check_consistent(store: SupportStore) -> int:
    from fewshot.index import SupportIndex

    meta, blobs = store.read()
    n = meta["n"]
    ix = SupportIndex.from_bytes(blobs["index"], {"dim": 64, "metric": "euclidean", "kind": "flat"})
    assert ix.ntotal == n and ix.vectors([n - 1])[0, 0] == n
    state = np.frombuffer(blobs["state"], np.int64)
    assert len(state) == 200_000 + n and (state == n).all()
    return n


def test_write_read_round_trip_and_old_generations_are_deleted(tmp_path):
    store = SupportStore(tmp_path / "ix")
    assert not store.exists()
    assert store.write({"a": 1}, {"x": ("bin", b"first")}) == 1
    first_id = store.index_id
    (store.path / "notes.txt").write_text("user file")  # not ours: must survive garbage collection
    assert store.write({"a": 2, "names": ["é", 3]}, {"x": ("bin", b"second"), "y": ("faiss", b"")}) == 2
    meta, blobs = store.read()
    assert meta == {"a": 2, "names": ["é", 3]} and store.index_id == first_id and blobs == {"x": b"second", "y": b""}
    names = sorted(p.name for p in store.path.iterdir())
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["generation"] == 2 and manifest["fewshot_version"]
    assert names == sorted([".lock", "manifest.json", "notes.txt", manifest["files"]["x"]["name"],
                            manifest["files"]["y"]["name"]])


def test_a_store_deletes_only_files_its_own_manifests_name(tmp_path):
    """A user's file whose name has the shape of a data file (key-generation-token.ext) survives every write."""
    store = SupportStore(tmp_path / "ix")
    store.write({"a": 1}, {"photo": ("jpg", b"ours")})
    user = store.path / "photo-20240101-deadbeef.jpg"
    user.write_bytes(b"the user's picture")
    tmp_like = store.path / ".photo-20240101-deadbeef.jpg.tmp-123"
    tmp_like.write_bytes(b"also the user's")
    for n in range(2, 5):
        store.write({"a": n}, {"photo": ("jpg", b"ours %d" % n)})
    assert user.read_bytes() == b"the user's picture" and tmp_like.read_bytes() == b"also the user's"
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert sorted(p.name for p in store.path.iterdir()) == sorted(
        [".lock", "manifest.json", manifest["files"]["photo"]["name"], user.name, tmp_like.name])


def test_kill_during_write_leaves_the_old_or_the_new_state(tmp_path):
    """SIGKILL a writer at a random instant of a write, many times: every read is whole and consistent."""
    path = tmp_path / "ix"
    last, outcomes = 0, []
    env = {**os.environ, "PYTHONPATH": ROOT}
    for seed in range(20):  # about 1 in 7 kill instants falls after the commit point
        proc = subprocess.run([sys.executable, "-c", WRITER, str(path), str(seed)], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        committed = [int(line) for line in proc.stdout.split()]
        assert committed == [last + 1, last + 2, last + 3]
        n = check_consistent(SupportStore(path))
        assert n in (last + 3, last + 4)  # the old state, or the new one
        outcomes.append(n - last - 3)
        last = n
    assert 0 in outcomes and 1 in outcomes  # killed both before and after the commit point
    # the next write collects what killed writers left behind
    SupportStore(path).write({"n": last + 1}, {"index": ("faiss", b""), "state": ("bin", b"")})
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("index-") and
                  not p.name.startswith("state-")) == [".lock", "manifest.json"]
    assert len(list(path.iterdir())) == 4


def test_concurrent_writers_under_the_lock_lose_no_update(tmp_path):
    path = tmp_path / "ix"
    SupportStore(path).write({"count": 0, "log": []}, {"data": ("bin", b"")})
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-c", INCREMENTER, str(path), w, "15"], env=env) for w in "abcd"]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    meta, blobs = SupportStore(path).read()
    assert meta["count"] == 60
    assert sorted(meta["log"]) == sorted("abcd" * 15)
    assert sorted(blobs["data"].decode()) == sorted("abcd" * 15)


def test_lock_free_readers_never_see_a_partial_generation(tmp_path):
    import threading

    store = SupportStore(tmp_path / "ix")
    store.write({"n": 0}, {"a": ("bin", b""), "b": ("bin", b"")})
    done = threading.Event()

    def writer():
        for n in range(1, 41):
            store.write({"n": n}, {"a": ("bin", bytes([n]) * 50_000), "b": ("bin", bytes([n]) * n)})
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    while not done.is_set():
        meta, blobs = SupportStore(store.path).read()
        n = meta["n"]
        assert blobs["a"] == bytes([n]) * (50_000 if n else 0) and blobs["b"] == bytes([n]) * n
        seen.append(n)
    thread.join()
    assert seen == sorted(seen) and SupportStore(store.path).read()[0]["n"] == 40


def test_lock_is_reentrant_within_a_process(tmp_path):
    with SupportStore.locked(tmp_path) as outer:
        with SupportStore.locked(tmp_path):
            outer.write({"k": 1}, {})  # write takes the lock a third time
    assert SupportStore(tmp_path).read()[0] == {"k": 1}


def test_corrupted_truncated_or_missing_files_are_reported(tmp_path):
    store = SupportStore(tmp_path / "ix")
    store.write({"a": 1}, {"x": ("bin", b"0123456789")})
    data = store.path / json.loads(store.manifest_path.read_text())["files"]["x"]["name"]
    data.write_bytes(b"0123456788")
    with pytest.raises(StoreError, match=r"is corrupted \(10 bytes, expected 10; checksum mismatch\)"):
        store.read()
    data.write_bytes(b"01234")
    with pytest.raises(StoreError, match=r"is truncated \(5 bytes, expected 10"):
        store.read()
    data.unlink()
    with pytest.raises(StoreError, match="a file named by manifest.json is missing"):
        store.read()
    text = store.manifest_path.read_text()
    store.manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(StoreError, match="manifest.json is corrupted \\(not valid JSON"):
        store.read()
    store.manifest_path.write_text(text.replace('"a":1', '"a":2'))
    with pytest.raises(StoreError, match="its checksum does not match its content"):
        store.read()
    assert issubclass(StoreError, ValueError)
    with pytest.raises(FileNotFoundError, match="no index folder at .*create it first"):
        SupportStore(tmp_path / "nope").read()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no manifest.json: it is not a fewshot index folder"):
        SupportStore(tmp_path / "empty").read()
    with pytest.raises(ValueError, match="must be plain words"):
        store.write({}, {"../x": ("bin", b"")})


def test_index_id_is_chosen_once_kept_across_writes_and_given_to_old_folders(tmp_path):
    import uuid

    from fewshot.store import _body_digest

    a, b = SupportStore(tmp_path / "a"), SupportStore(tmp_path / "b")
    a.write({"n": 1}, {})
    b.write({"n": 1}, {})
    ident = a.index_id
    assert uuid.UUID(ident).hex == ident and ident != b.index_id  # a random UUID per folder
    a.write({"n": 2}, {})
    again = SupportStore(a.path)
    assert again.read()[0] == {"n": 2} and again.index_id == ident
    # a folder written before index_id existed reads as None and gets one on its next write
    doc = json.loads(a.manifest_path.read_text())
    del doc["body"]["index_id"]
    doc["sha256"] = _body_digest(doc["body"])
    a.manifest_path.write_text(json.dumps(doc))
    old = SupportStore(a.path)
    old.read_manifest()
    assert old.index_id is None
    old.write({"n": 3}, {})
    assert old.index_id not in (None, ident)
    assert json.loads(a.manifest_path.read_text())["body"]["index_id"] == old.index_id
    with pytest.raises(ValueError, match="meta must not hold 'index_id'"):
        a.write({"index_id": "mine"}, {})
