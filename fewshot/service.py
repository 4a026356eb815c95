"""``fewshot serve``: an HTTP service (FastAPI) in front of one support-index folder, its encoder loaded once.

:func:`create_app` builds the ASGI app for folder ``DIR``; ``fewshot serve DIR`` runs it with uvicorn.
Bodies and answers are JSON; every refusal is ``{"error": message}`` with a 4xx status, and leaves the
folder exactly as it was::

    GET  /health                                  -> {"status": "ok", "generation", "n_classes", "encoder"}
    GET  /describe                                -> what `fewshot index list --json` shows, and the generation
    POST /predict  {"texts": [...], "top_k": 1}   -> {"generation", "predictions": [{"text", "label", "score",
                                                      "top_k": [{"label", "score"}, ...]}, ...]}
    POST /predict  {..., "log": true} (or /predict?log=true): each query is appended to the prediction log;
                                                     every prediction also carries its "id"
    POST /add      {"texts": [...], "labels": [...], "replace": false}   (one label per text)
    POST /remove   {"labels": [...]}
    POST /correct  {"id": N, "label": L}           (`fewshot index correct`)
    POST /confirm  {"id": N}                       (`fewshot index confirm`)

Status codes: 422 for a body of the wrong shape (a missing field, a wrong type, an unknown field), 400 for
values the library refuses (a blank text, an unknown class or id, ``top_k`` out of range: the checks and
messages of ``fewshot index``), 401 for a write without the API key, 409 when another writer's update
could not be merged, 503 once the folder was rebuilt with another encoder (restart the server to load it).

Writes (add, remove, correct, confirm, predict with log) need the API key when one is set
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``); reads stay open. Text indexes only: an index over
an image encoder is served for describe and health, and predict/add are refused saying so.

Sharing the folder with other writers: every change goes through the library's locked update
(:meth:`FewShotClassifier.update`, :func:`fewshot.support.curation.correct`), exactly as the CLI does, so
``fewshot index add`` and the server may write at the same time and lose nothing. Before each request the
server compares the folder's manifest file (the store replaces it atomically at every commit) with the one
its classifier was loaded from, and reloads (with the encoder it already holds) when it changed.

Concurrency inside the process: requests run in uvicorn's thread pool; embedding is serialised (one model,
one tokenizer: fast tokenizers are not safe to call from two threads at once), searches of a loaded
classifier read an object that is never changed in place (a write installs a new one).
"""
from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable
from typing import Union

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .inputs import check_texts
from .store import ConcurrentUpdateError, StoreError, SupportStore
from .support import FewShotClassifier, curation

Label = Union[str, int]  # what a saved index can hold (FewShotClassifier.save)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PredictBody(_Body):
    texts: list[str] = Field(description="The texts to classify.")
    top_k: int = Field(1, description="Also list the K nearest classes.")
    log: bool = Field(False, description="Append each query to the prediction log and return its id.")


class AddBody(_Body):
    texts: list[str]
    labels: list[Label] = Field(description="One label per text; a new label adds a class.")
    replace: bool = Field(False, description="Reset existing classes to these examples instead of updating "
                          "their running mean.")


class RemoveBody(_Body):
    labels: list[Label]


class CorrectBody(_Body):
    id: int = Field(description="The id a logged predict returned.")
    label: Label = Field(description="The true class of that query (a new name adds a class).")


class ConfirmBody(_Body):
    id: int


class EncoderChanged(RuntimeError):
    """The folder was rebuilt with another encoder (``fewshot index rebuild``) than the one this process holds."""


class IndexService:
    """The warm state behind the app: one encoder and the folder's classifier at its latest generation."""

    def __init__(self, path: str | os.PathLike, encoder=None, *, batch_size: int = 128, device: str | None = None):
        self.path = os.path.realpath(path)
        self._manifest = SupportStore(self.path).manifest_path
        self._load_kw = dict(batch_size=batch_size, device=device)
        self._state = threading.Lock()  # guards _clf and _stamp together
        self._model = threading.Lock()  # one embedding at a time
        try:
            stamp = self._stamp()  # taken before the load: a write in between only costs one extra reload
        except FileNotFoundError:
            stamp = None  # no manifest: the load below says what is missing and how to fix it
        self._clf = FewShotClassifier.load(self.path, encoder, **self._load_kw)
        self._stamp_seen = stamp
        self.encoder = self._clf.encoder  # loaded once; every later load and update reuses it

    def _stamp(self):
        """Identity of the manifest file now: the store writes a new file and renames it over the old one at
        every commit, so a new commit gives a new (inode, mtime, size)."""
        st = os.stat(self._manifest)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def classifier(self) -> FewShotClassifier:
        """The classifier at the folder's latest generation (reloaded when another writer committed)."""
        stamp = self._stamp()
        with self._state:
            if stamp != self._stamp_seen:
                self._check_encoder()
                self._clf = FewShotClassifier.load(self.path, self.encoder, **self._load_kw)
                self._stamp_seen = stamp
            return self._clf

    def _check_encoder(self) -> None:
        stored = FewShotClassifier.describe(self.path)["fingerprint"]
        if stored != self.encoder.fingerprint():
            raise EncoderChanged(f"the index in {self.path} is now built with another encoder (weights fingerprint "
                                 f"{stored}; this server holds {self.encoder.fingerprint()}), e.g. by `fewshot index "
                                 "rebuild`; restart `fewshot serve` to load it")

    def _write(self, change: Callable[[FewShotClassifier], object]) -> tuple[object, FewShotClassifier]:
        """``change(clf)`` under the folder's locked update; the updated classifier is installed and returned
        with what ``change`` returned."""
        with SupportStore.locked(self.path):  # re-entrant: held across update's save, to stamp what it wrote
            self._check_encoder()
            with FewShotClassifier.update(self.path, self.encoder, **self._load_kw) as clf:
                out = change(clf)
            with self._state:
                self._clf, self._stamp_seen = clf, self._stamp()
        return out, clf

    def _require_text(self, clf: FewShotClassifier, what: str) -> None:
        if clf.encoder.modality != "text":
            raise ValueError(f"{what}: the index in {self.path} uses encoder {clf.encoder.name!r}, which reads "
                             f"{clf.encoder.modality}, but this service takes texts only; use the Python API "
                             "(or `fewshot index add --images`) for image indexes")

    # -- operations ---------------------------------------------------------------------------------
    def predict(self, texts: list[str], top_k: int, log: bool) -> dict:
        clf = self.classifier()
        if not texts:
            raise ValueError("predict: expected at least one text in \"texts\", got an empty list")
        check_texts(texts, "predict: texts")
        if not clf.n_classes:
            raise ValueError(f"predict: the index in {self.path} has no classes yet; add some first (POST /add, "
                             f"or `fewshot index add {self.path} --label NAME TEXT...`)")
        self._require_text(clf, "predict")
        if not 1 <= top_k <= clf.n_classes:
            raise ValueError(f"predict: top_k must be from 1 to the number of classes ({clf.n_classes}), got {top_k}")
        with self._model:
            z = clf.embed(texts)
        rows = curation.predict(clf, texts, top_k, log=log, z=z)
        return {"generation": clf.generation_, "predictions": rows}

    def add(self, texts: list[str], labels: list, replace: bool) -> dict:
        if not texts:
            raise ValueError("add: expected at least one text in \"texts\", got an empty list")
        if len(labels) != len(texts):
            raise ValueError(f"add: expected one label per text, got {len(texts)} texts and {len(labels)} labels")
        check_texts(texts, "add: texts")

        def change(clf):
            self._require_text(clf, "add")
            before = set(clf.classes_)
            with self._model:
                clf.add_classes(texts, labels, replace=replace)
            return len(set(labels) - before)

        new, clf = self._write(change)
        return {"added": len(texts), "new_classes": new, "updated_classes": len(set(labels)) - new,
                "n_classes": clf.n_classes, "generation": clf.generation_}

    def remove(self, labels: list) -> dict:
        if not labels:
            raise ValueError("remove: expected at least one class name in \"labels\", got an empty list")
        _, clf = self._write(lambda clf: clf.remove_classes(list(labels)))
        return {"removed": len(set(labels)), "n_classes": clf.n_classes, "generation": clf.generation_}

    def correct(self, id: int, label) -> dict:
        with SupportStore.locked(self.path), self._model:  # correct embeds the query under the folder lock
            self._check_encoder()
            entry = curation.correct(self.path, id, label, self.encoder)
        clf = self.classifier()
        return {"id": id, "query": entry["query"], "predicted": entry["labels"][0], "label": label,
                "n_classes": clf.n_classes, "generation": clf.generation_}

    def confirm(self, id: int) -> dict:
        entry = curation.confirm(self.path, id)
        return {"id": id, "query": entry["query"], "label": entry["labels"][0]}

    def describe(self) -> dict:
        info = FewShotClassifier.describe(self.path)
        return {**{k: v for k, v in info.items() if k != "log_corrections"}, "n_classes": len(info["classes"])}

    def health(self) -> dict:
        clf = self.classifier()
        return {"status": "ok", "generation": clf.generation_, "n_classes": clf.n_classes,
                "encoder": clf.encoder.name}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _shape_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    return ("expected a JSON body of the documented shape (see GET /docs); " + "; ".join(parts))


def create_app(path: str | os.PathLike, *, api_key: str | None = None, encoder=None, batch_size: int = 128,
               device: str | None = None) -> FastAPI:
    """The ASGI app serving the support index in folder ``path`` (loaded now, with its encoder).

    ``api_key``: required (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) by every request that
    writes; None: no key. ``encoder``: passed to :meth:`FewShotClassifier.load` (None: the stored one).
    """
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise ValueError(f"api_key must be a non-empty string, got {api_key!r}; pass a secret or leave it unset")
    service = IndexService(path, encoder, batch_size=batch_size, device=device)
    app = FastAPI(title="fewshot support index", description=f"The support index in {service.path}.")
    app.state.service = service

    def authorized(request: Request) -> bool:
        if api_key is None:
            return True
        auth = request.headers.get("authorization", "")
        given = [request.headers.get("x-api-key"), auth[7:].strip() if auth[:7].lower() == "bearer " else None]
        return any(g is not None and secrets.compare_digest(g.encode(), api_key.encode()) for g in given)

    def refuse_unauthorized(what: str) -> None:
        raise HTTPException(401, f"{what} changes the index and needs the API key this server was started with; "
                            "send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`",
                            headers={"WWW-Authenticate": "Bearer"})

    def writer(request: Request) -> None:  # a dependency: checked before the body is
        if not authorized(request):
            refuse_unauthorized(f"POST {request.url.path}")

    @app.exception_handler(RequestValidationError)
    async def bad_shape(request, exc):
        return _error(422, _shape_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ValueError)
    async def refused(request, exc):
        if isinstance(exc, ConcurrentUpdateError):
            return _error(409, str(exc))
        if isinstance(exc, StoreError):  # a damaged folder is not the request's fault
            return _error(500, str(exc))
        return _error(400, str(exc))

    @app.exception_handler(EncoderChanged)
    async def encoder_changed(request, exc):
        return _error(503, str(exc))

    @app.exception_handler(FileNotFoundError)
    async def folder_gone(request, exc):
        return _error(500, f"the index folder {service.path} cannot be read ({exc}); restore it and restart")

    @app.get("/health")
    def health():
        return service.health()

    @app.get("/describe")
    def describe():
        return service.describe()

    @app.post("/predict")
    def predict(body: PredictBody, request: Request, log: bool = False):
        logged = body.log or log
        if logged and not authorized(request):
            refuse_unauthorized("predict with log")
        return service.predict(body.texts, body.top_k, logged)

    @app.post("/add", dependencies=[Depends(writer)])
    def add(body: AddBody):
        return service.add(body.texts, body.labels, body.replace)

    @app.post("/remove", dependencies=[Depends(writer)])
    def remove(body: RemoveBody):
        return service.remove(body.labels)

    @app.post("/correct", dependencies=[Depends(writer)])
    def correct(body: CorrectBody):
        return service.correct(body.id, body.label)

    @app.post("/confirm", dependencies=[Depends(writer)])
    def confirm(body: ConfirmBody):
        return service.confirm(body.id)

    return app
