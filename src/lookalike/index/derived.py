"""Derived state of an index: everything computed from the catalog and safe to throw away.

The catalog holds raw descriptors (the source of truth). From them come, like an estimator's
fitted attributes:
  - the PCA-whitening (whitening.npz), turned on only where the label-free self-check of
    lookalike.whitening_check says it helps this collection, re-checked and re-learned when
    the collection doubles;
  - the search vectors (raw -> L2 -> whitening -> L2) and the FAISS index over them
    (vectors.faiss), with database-side augmentation (DBA) when the settings ask for it.

`Derived.vector_index()` is the one way to get the FAISS index: it uses the in-memory one when
it matches the catalog's generation, else the saved file when that is current and readable,
else rebuilds from the catalog (and saves it, when the index is open for writing). A missing,
stale or corrupt vectors.faiss is therefore never an error, only a rebuild.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from lookalike import whitening_check
from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.index.backends import backend_for
from lookalike.index.manifest import WhiteningState
from lookalike.index.store import Store
from lookalike.index.vectors import VectorIndex, needs_training
from lookalike.pooling import l2n
from lookalike.postprocess.qe import Expansion, parse_expansion
from lookalike.whitening import Whitening, fit_whitening, whitening_allowed
from lookalike.whitening_check import decide_whitening

log = logging.getLogger(__name__)

TRAIN_SAMPLE = 100_000  # vectors used to train whitening / an approximate index
WHITENING_RETRAIN_GROWTH = 2.0  # retrain whitening when the collection doubles


class Derived:
    """Whitening and FAISS index of one open index, kept in line with its catalog."""

    def __init__(self, store: Store, *, mmap: bool = False) -> None:
        self.store = store
        self.mmap = mmap  # memory-map the FAISS file instead of reading it (read-only opens)
        self._whitening: Whitening | None = None
        self._whitening_loaded = False
        self._vectors: VectorIndex | None = None
        self._generation = -1
        # where the vectors live (settings.store): a FAISS file or a Milvus collection
        self.backend = backend_for(store)
        # A running sync's phase reporter (lookalike.sync): told when whitening is trained.
        self.on_phase: Callable[..., None] | None = None
        # Set by the Index facade: describes edited copies of catalog images for the whitening
        # self-check (lookalike.whitening_check.copy_describer); None: the size rule decides.
        self.describe_copies: Callable | None = None

    # -- search space ------------------------------------------------------------------------

    @property
    def whitening(self) -> Whitening | None:
        with self.store.lock:
            if not self._whitening_loaded:
                self._whitening = self._load_whitening()
                self._whitening_loaded = True
            return self._whitening

    def whitening_stamp(self, trained_on: int) -> str | None:
        """What whitening.npz must carry: this index's identity and the training size."""
        index_id = self.store.manifest.index_id
        return None if index_id is None else f"{index_id}:whitening:{trained_on}"

    def _load_whitening(self) -> Whitening | None:
        """The saved whitening, when it is this index's own. A foreign one (copied from
        another index) is learned again when the index is open for writing, and refused
        otherwise: searching through another collection's whitening gives wrong results."""
        store = self.store
        state = store.manifest.whitening
        if state is None:
            return None
        file = store.path / state.file
        whitening = Whitening.load(file)
        wanted = self.whitening_stamp(state.trained_on)
        if wanted is None:
            return whitening
        found = _npz_stamp(file)
        if found == wanted:
            return whitening
        if not store.writable:
            raise IndexCorruptError(
                f"{file}: not this index's own whitening (stamp {found or 'missing'}, expected "
                f"{wanted}); run 'lookalike index' on this index to learn it again"
            )
        log.warning("%s is not this index's own whitening: learning it again", file)
        store.manifest.whitening = None
        store.manifest.whitening_check = None  # decide and learn it again on this index
        store.save_manifest()
        self._vectors = None
        self._whitening_loaded = True
        self._whitening = None
        self._maybe_retrain_whitening(store.catalog.count())
        return self._whitening

    @property
    def search_dim(self) -> int | None:
        return self.store.manifest.search_dim

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw descriptors (n, D) or (D,) -> search vectors (n, d): whitening (if trained), L2."""
        raw = l2n(np.atleast_2d(np.asarray(raw, dtype=np.float32)))
        w = self.whitening
        return w.apply(raw) if w is not None else raw

    def wanted_key(self, n: int) -> tuple[str, str]:
        """The FAISS key for `n` vectors: the forced one (settings.index_key) or the automatic
        choice; either way exact search ("Flat") until there are enough vectors to train it."""
        s = self.store.settings
        backend = self.backend
        if s.index_key:
            key, params = s.index_key, s.index_params
        else:
            key, params = backend.choose(n, self.search_dim or 1)
        if backend.needs_training(key) and n < backend.min_training_vectors(key):
            return "Flat", ""
        return key, params

    # -- the FAISS index ---------------------------------------------------------------------

    def vector_index(self) -> VectorIndex | None:
        """The FAISS index of the current catalog (None while the index has never held an
        image): loaded, or rebuilt when missing, stale or corrupt."""
        with self.store.lock:
            if self._vectors is not None and self._generation == self.store.catalog.generation:
                return self._vectors
            return self.refresh()

    def refresh(self) -> VectorIndex | None:
        """Bring whitening and the FAISS index in line with the catalog; save them when the
        index is writable. Returns the FAISS index."""
        store = self.store
        with store.lock:
            catalog, manifest = store.catalog, store.manifest
            n = catalog.count()
            retrained = store.writable and self._maybe_retrain_whitening(n)
            key, params = self.wanted_key(n)
            generation = catalog.generation
            if not retrained and (self._vectors is None or self._generation != generation):
                # a read-only open takes the saved key as it is: it cannot save a better one
                self._load_saved(key if store.writable else None, generation)
            stale = (
                retrained
                or self._vectors is None
                or self._generation != generation
                or (store.writable and self._vectors.key != key)
            )
            if stale:
                if n or self.search_dim:
                    log.info("building the vector index of %s (%d vectors)", store.path, n)
                    self._vectors = self._build(key, params)
                else:
                    self._vectors = None
                self._generation = generation
            vectors = self._vectors
            retuned = vectors is not None and vectors.key == key and vectors.params != params
            if retuned:
                vectors.set_params(params)  # same index, search knobs for the new size
            if store.writable and vectors is not None:
                if stale or retuned or manifest.index_generation != generation:
                    self.backend.save(vectors, stamp=self.stamp(generation))
                    manifest.index_key = vectors.key
                    manifest.index_params = vectors.params
                    manifest.index_generation = generation
                    store.save_manifest()
            return vectors

    def _load_saved(self, key: str | None, generation: int) -> None:
        """Use the FAISS file on disk when it is current (saves a rebuild, which with DBA
        means a neighbour search over the whole collection); a corrupt file is rebuilt."""
        m = self.store.manifest
        if not m.index_key or m.index_generation != generation:
            return
        if key is not None and m.index_key != key:
            return
        try:
            self._vectors = self.backend.load(
                m.index_key,
                self.search_dim,
                m.index_params,
                mmap=self.mmap,
                stamp=self.stamp(generation),
            )
        except IndexCorruptError as exc:
            log.warning("rebuilding the vector index: %s", exc)
            self._vectors = None
            return
        if self._vectors is not None:
            self._generation = generation

    def stamp(self, generation: int) -> str | None:
        """What the saved FAISS file must carry: this index's identity and the catalog
        generation it reflects (None for an index made before identities, opened read-only)."""
        index_id = self.store.manifest.index_id
        return None if index_id is None else f"{index_id}:{generation}"

    def _build(self, key: str, params: str) -> VectorIndex:
        catalog = self.store.catalog
        dim = self.search_dim
        if dim is None:
            raise ConfigError("the index is empty: nothing to search yet")
        index = self.backend.new(key, dim, params)
        if not index.is_trained:
            index.train(self.transform(catalog.sample_descriptors(TRAIN_SAMPLE)))
        dba = parse_expansion(self.store.settings.dba)
        if dba is not None:
            return self._add_augmented(index, dba)
        for ids, raw in catalog.iter_descriptors():
            index.add(ids, self.transform(raw))
        return index

    def _add_augmented(self, index: VectorIndex, spec: Expansion) -> VectorIndex:
        """Database-side augmentation: add each search vector as the weighted mean of itself
        and its `spec.n` nearest neighbours (lookalike.postprocess.qe.dba_batches). The
        neighbours come from an exact search in batches, or, for an approximate index type,
        from a temporary index of that type (so the cost follows the collection's index)."""
        from lookalike.postprocess.qe import dba_batches

        catalog = self.store.catalog
        parts = [(ids, self.transform(raw)) for ids, raw in catalog.iter_descriptors()]
        if not parts:
            return index
        ids = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        del parts
        neighbours = None
        if needs_training(index.key):
            scratch = VectorIndex(index.key, index.dim, index.params)
            scratch.train(self.transform(catalog.sample_descriptors(TRAIN_SAMPLE)))
            scratch.add(np.arange(len(x), dtype=np.int64), x)
            neighbours = scratch.search
        for start, rows in dba_batches(x, spec, neighbours=neighbours):
            index.add(ids[start : start + len(rows)], rows)
        log.info("database-side augmentation (%s) of %d vectors", spec, len(x))
        return index

    def _maybe_retrain_whitening(self, n: int) -> bool:
        store = self.store
        s, manifest = store.settings, store.manifest
        dim = manifest.dim
        if not s.whiten_dim or dim is None:
            return False
        out_dim = min(s.whiten_dim, dim)
        current = manifest.whitening
        if current is not None and n < WHITENING_RETRAIN_GROWTH * current.trained_on:
            return False
        checked = manifest.whitening_check
        if (
            checked is not None
            and checked.get("method") == "self-check"
            and n < WHITENING_RETRAIN_GROWTH * checked.get("n", 0)
        ):
            return False  # decided by evidence at this size; re-checked when it doubles
        if n < whitening_check.min_check_images(out_dim) and current is None:
            return False  # too few images to check: off (nothing recorded, nothing to undo)
        reported = False
        if checked is not None and checked.get("method") == "size rule":
            # no image files to check on (precomputed vectors): the size rule, cheaply
            verdict = {**checked, "n": n, "use": whitening_allowed(n, out_dim)}
        else:
            reported = self.on_phase is not None
            if self.on_phase is not None:
                self.on_phase("checking whitening")
            verdict = decide_whitening(
                store.catalog, out_dim, self.describe_copies, lambda r: fit_whitening(r, out_dim)
            )
        manifest.whitening_check = verdict
        log.info("whitening self-check on %d images: %s", n, verdict)
        if not verdict["use"]:
            if reported and self.on_phase is not None:
                self.on_phase("building index")
            if current is None:
                store.save_manifest()
                return False
            # it was on and the evidence now says off: drop it, rebuild the vectors raw
            manifest.whitening = None
            self._whitening = None
            self._whitening_loaded = True
            store.save_manifest()
            (store.path / current.file).unlink(missing_ok=True)
            return True
        if self.on_phase is not None:
            self.on_phase("training whitening")
        # normalized in place: at 100k x 1280 every copy of the sample is 0.5 GB
        sample = store.catalog.sample_descriptors(TRAIN_SAMPLE)
        sample /= np.sqrt(np.einsum("ij,ij->i", sample, sample))[:, None] + 1e-6
        whitening = fit_whitening(sample, out_dim)
        state = WhiteningState(kind=whitening.kind, dim=out_dim, trained_on=len(sample))
        whitening.save(store.path / state.file, stamp=self.whitening_stamp(state.trained_on))
        self._whitening = whitening
        self._whitening_loaded = True
        manifest.whitening = state
        store.save_manifest()
        log.info("trained whitening %d -> %d on %d images", dim, out_dim, len(sample))
        if self.on_phase is not None:
            self.on_phase("building index")
        return True

    # -- keeping the in-memory index current between refreshes -------------------------------

    def before_writes(self) -> None:
        """Called before a sync writes: a backend whose writes go straight to the saved index
        (Milvus) opens it now, so that changes are applied to it rather than rebuilt."""
        with self.store.lock:
            if self._vectors is not None and self._generation == self.store.catalog.generation:
                return
            if self.backend.load_before_writes and self.store.catalog.count():
                self.vector_index()

    def added(self, ids: Sequence[int], raw: np.ndarray) -> None:
        """Images were written to the catalog: add their vectors to the in-memory index, or
        drop it (rebuilt on the next refresh) where that cannot be done incrementally."""
        with self.store.lock:
            if self._vectors is None or not len(ids):
                return
            if self.store.settings.dba:
                self._vectors = None  # augmented vectors depend on their neighbours: rebuild
                return
            self._vectors.add(np.asarray(ids, dtype=np.int64), self.transform(raw))
            self._generation = self.store.catalog.generation

    def removed(self, ids: Sequence[int]) -> None:
        """Images left the catalog: remove their vectors, or drop the in-memory index."""
        with self.store.lock:
            if self._vectors is None or not len(ids):
                return
            if self.store.settings.dba:
                self._vectors = None  # neighbours of the removed ones change: rebuild
            elif self._vectors.remove(np.asarray(ids, dtype=np.int64)):
                self._generation = self.store.catalog.generation
            else:
                self._vectors = None  # this index type cannot remove: rebuild on refresh

    def close(self) -> None:
        """Let go of the vector store's connection (a Milvus client)."""
        with self.store.lock:
            self._vectors = None
            self.backend.close()

    def drop(self) -> None:
        """Forget the in-memory FAISS index (the next use loads or rebuilds it)."""
        with self.store.lock:
            self._vectors = None


def _npz_stamp(file) -> str | None:  # noqa: ANN001 - a Path
    """The identity stamp stored in a whitening file, or None when it has none."""
    try:
        with np.load(file, allow_pickle=False) as data:
            return str(data["stamp"]) if "stamp" in data.files else None
    except (OSError, ValueError):
        return None
