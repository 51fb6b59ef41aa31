"""The index as users know it: a directory to create, sync with folders, and search.

    idx = Index.open_or_create("photos.idx")
    report = idx.sync(["~/Pictures"])
    hits = idx.search("query.jpg", k=10)

Layout of an index directory:
    manifest.json    settings and derived-state bookkeeping (see index/manifest.py)
    catalog.sqlite   images, raw descriptors, skipped files (the source of truth)
    vectors.faiss    FAISS index of the search vectors (derived, rebuilt when stale)
    whitening.npz    learned PCA-whitening (derived)
    lock             held by the one process that writes
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike import __version__
from lookalike.errors import (
    ConfigError,
    ImageError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
)
from lookalike.extract import Extractor, Features
from lookalike.images import crop_box, image_size, iter_image_files, load_image
from lookalike.index.catalog import Catalog, ImageRecord, NewImage, Skipped
from lookalike.index.manifest import (
    MANIFEST_NAME,
    IndexSettings,
    Manifest,
    WhiteningState,
    read_manifest,
    write_manifest,
)
from lookalike.index.vectors import (
    VectorIndex,
    choose_index_key,
    min_training_vectors,
    needs_training,
)
from lookalike.labels import top_classes
from lookalike.pipeline import Extracted, extract_files, extract_one, file_hash, os_reason
from lookalike.pooling import l2n
from lookalike.postprocess.qe import Expansion, parse_expansion
from lookalike.tags import hits_with_tags
from lookalike.whitening import Whitening, fit_whitening, whitening_allowed

log = logging.getLogger(__name__)

CATALOG_NAME = "catalog.sqlite"
VECTORS_NAME = "vectors.faiss"
LOCK_NAME = "lock"
DEFAULT_BATCH = 32
TRAIN_SAMPLE = 100_000  # vectors used to train whitening / an approximate index
WHITENING_RETRAIN_GROWTH = 2.0  # retrain whitening when the collection doubles
LOCALIZE_MAX = 20  # localization re-runs the CNN on each result: only the top ones


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a catalog id, the file path and the cosine similarity.

    Optional extras, filled by the steps that compute them: `box` (x0, y0, x1, y1) where the
    query object sits in this image, in the image's pixel coordinates; `tags`, the image's
    top ImageNet classes as `{"class_id", "name", "prob"}` dicts.
    """

    id: int
    path: str
    score: float
    box: tuple[int, int, int, int] | None = None
    tags: tuple[dict, ...] | None = None

    def to_dict(self) -> dict:
        out = {"id": self.id, "path": self.path, "score": self.score}
        if self.box is not None:
            out["box"] = list(self.box)
        if self.tags is not None:
            out["tags"] = [dict(t) for t in self.tags]
        return out


@dataclass(slots=True)
class SyncReport:
    """What one sync did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    count: int = 0
    seconds: float = 0.0

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Passed to a sync's progress callback after each file."""

    done: int
    total: int
    path: str


def is_index(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_NAME).is_file()


class Index:
    """An index directory. Open with `Index.open`, `Index.create` or `Index.open_or_create`."""

    def __init__(self, path: Path, manifest: Manifest, *, writable: bool, lock_fd: int | None):
        self.path = path
        self._manifest = manifest
        self.writable = writable
        self._lock_fd = lock_fd
        self._mutex = threading.RLock()
        self._catalog = Catalog(path / CATALOG_NAME, readonly=not writable)
        self._extractor: Extractor | None = None
        self._whitening: Whitening | None = None
        self._whitening_loaded = False
        self._vectors: VectorIndex | None = None
        self._vectors_generation = -1
        self.mmap = False  # memory-map the FAISS file instead of reading it (read-only opens)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, settings: IndexSettings | None = None) -> Index:
        """Create a new, empty index directory (it may exist but must be empty)."""
        path = Path(path).expanduser().absolute()
        settings = settings or IndexSettings()
        _check_settings(settings)
        if is_index(path):
            raise ConfigError(f"{path}: an index already exists here")
        if path.exists() and (
            not path.is_dir() or any(not _is_create_leftover(p.name) for p in path.iterdir())
        ):
            raise ConfigError(f"{path}: exists and is not an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(path)
        manifest = Manifest(lookalike_version=__version__, settings=settings)
        Catalog(path / CATALOG_NAME).close()
        write_manifest(path, manifest)
        return cls(path, manifest, writable=True, lock_fd=lock_fd)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        writable: bool = False,
        settings: IndexSettings | None = None,
        mmap: bool = False,
    ) -> Index:
        """Open an existing index. With `settings`, refuse when the index was built otherwise.
        With `mmap` (read-only opens only), the FAISS file is memory-mapped rather than read into
        memory, so a collection larger than RAM stays searchable (pages load as searches touch
        them)."""
        if mmap and writable:
            raise ConfigError("mmap opens an index read-only; it cannot be combined with writing")
        path = Path(path).expanduser().absolute()
        if not is_index(path):
            raise IndexNotFoundError(f"{path}: no lookalike index here (create one with 'index')")
        lock_fd = _acquire_lock(path) if writable else None
        try:
            manifest = read_manifest(path)
            if settings is not None:
                _check_same(manifest.settings, settings, path)
            index = cls(path, manifest, writable=writable, lock_fd=lock_fd)
            index.mmap = mmap
            return index
        except BaseException:
            _release_lock(lock_fd)
            raise

    @classmethod
    def open_or_create(cls, path: str | Path, settings: IndexSettings | None = None) -> Index:
        """Open for writing, creating the index with `settings` (or defaults) if missing."""
        if is_index(Path(path).expanduser()):
            return cls.open(path, writable=True, settings=settings)
        return cls.create(path, settings)

    def close(self) -> None:
        with self._mutex:
            self._catalog.close()
            _release_lock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_settings(self, **given: object) -> None:
        """Raise IndexMismatchError when any given setting differs from the index's own."""
        from lookalike.index.manifest import validate_settings

        given = {k: v for k, v in given.items() if v is not None}
        if not given:
            return
        wanted = self.settings.model_copy(
            update=validate_settings(**given).model_dump(include=set(given))
        )
        _check_same(self.settings, wanted, self.path)

    # -- properties --------------------------------------------------------------------------

    @property
    def settings(self) -> IndexSettings:
        return self._manifest.settings

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def extractor(self) -> Extractor:
        if self._extractor is None:
            s = self.settings
            self._extractor = Extractor(s.model, s.descriptor, s.max_side, s.scales)
        return self._extractor

    def __len__(self) -> int:
        with self._mutex:
            return self._catalog.count()

    # -- writing -----------------------------------------------------------------------------

    def sync(
        self,
        dirs: Iterable[str | Path],
        *,
        progress: Callable[[SyncProgress], None] | None = None,
        batch_size: int = DEFAULT_BATCH,
        on_features: Callable[[int, Features], None] | None = None,
    ) -> SyncReport:
        """Bring the index in line with folders: add new images, re-embed changed ones, remove
        ones that are gone. Work is committed every `batch_size` images, so an interrupted sync
        loses at most one batch and the next one resumes.
        """
        self._require_writable()
        start = time.perf_counter()
        roots = [_resolve_dir(d) for d in dirs]
        report = SyncReport()
        with self._mutex:
            known = self._catalog.file_states()
        seen: set[str] = set()
        todo: list[tuple[str, os.stat_result, int | None]] = []  # path, stat, replaced id
        metadata_only: list[tuple[int, int, int]] = []
        for file in iter_image_files(roots):
            path = str(file)
            if _is_under(path, self.path):
                continue  # the index's own files (uploads, thumbnails) are not photos
            seen.add(path)
            try:
                st = file.stat()
            except OSError as exc:
                report.skipped.append(Skipped(path, os_reason(exc)))
                continue
            state = known.get(path)
            if state is None:
                todo.append((path, st, None))
                continue
            image_id, size, mtime_ns, content_hash = state
            if size == st.st_size and mtime_ns == st.st_mtime_ns:
                report.unchanged += 1
                continue
            try:
                same = size == st.st_size and file_hash(path) == content_hash
            except OSError:
                same = False
            if same:
                metadata_only.append((image_id, st.st_size, st.st_mtime_ns))
                report.unchanged += 1
            else:
                todo.append((path, st, image_id))
        gone = [
            state[0]
            for path, state in known.items()
            if path not in seen and any(_is_under(path, root) for root in roots)
        ]
        with self._mutex:
            self._catalog.update_file_states(metadata_only)
            vanished = [
                path
                for path in self._catalog.skipped_states()
                if path not in seen and any(_is_under(path, root) for root in roots)
            ]
            if vanished:
                self._catalog.write_batch(clear_skipped=vanished)
            if gone:
                self._catalog.write_batch(remove_ids=gone)
                self._vectors_remove(gone)
                report.removed = len(gone)

        total = len(todo)
        batch: list[NewImage] = []
        batch_features: list[Features] = []
        batch_replaced: list[int] = []
        batch_skipped: list[tuple[Skipped, int | None, int | None]] = []
        results = extract_files([t[0] for t in todo], self.extractor)
        for done, (item, (path, st, replaced)) in enumerate(zip(results, todo, strict=True), 1):
            if isinstance(item, ImageError):
                skip = Skipped(path, item.reason)
                report.skipped.append(skip)
                batch_skipped.append((skip, st.st_size, st.st_mtime_ns))
            else:
                batch.append(_new_image(item))
                batch_features.append(item.features)
                if replaced is None:
                    report.added += 1
                else:
                    report.updated += 1
                    batch_replaced.append(replaced)
            if progress is not None:
                progress(SyncProgress(done, total, path))
            if len(batch) + len(batch_skipped) >= batch_size:
                self._commit(batch, batch_features, batch_replaced, batch_skipped, on_features)
                batch, batch_features, batch_replaced, batch_skipped = [], [], [], []
        self._commit(batch, batch_features, batch_replaced, batch_skipped, on_features)
        self.refresh()
        report.count = len(self)
        report.seconds = time.perf_counter() - start
        return report

    def add_vectors(
        self,
        paths: Sequence[str | Path],
        vectors: np.ndarray,
        *,
        refresh: bool = True,
    ) -> list[int]:
        """Add precomputed raw descriptors (computed elsewhere with this index's settings).

        A path already in the index is replaced. Paths need not exist on this machine; when
        they do, size, mtime, content hash and image size are recorded too.
        """
        self._require_writable()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(paths):
            raise ConfigError(
                f"expected {len(paths)} vectors as a 2-d array, got shape {vectors.shape}"
            )
        dim = self._manifest.dim
        if dim is not None and vectors.shape[1] != dim:
            raise IndexMismatchError(
                f"{self.path}: vectors have dimension {vectors.shape[1]}, index has {dim}"
            )
        if not np.all(np.isfinite(vectors)):
            raise ConfigError("vectors contain NaN or infinite values")
        vectors = l2n(vectors)
        items = []
        for path, vec in zip(paths, vectors, strict=True):
            p = Path(path)
            size = mtime_ns = width = height = 0
            content_hash = ""
            if p.is_file():
                st = p.stat()
                size, mtime_ns = st.st_size, st.st_mtime_ns
                content_hash = file_hash(p)
                try:
                    width, height = image_size(p)
                except ImageError:
                    pass
            items.append(NewImage(str(path), size, mtime_ns, content_hash, width, height, vec))
        with self._mutex:
            replaced = [r.id for r in (self._catalog.find_path(i.path) for i in items) if r]
            ids = self._commit(items, None, replaced, [], None)
            if refresh:
                self.refresh()
        return ids

    def add_image(self, path: str | Path) -> int:
        """Index one image file now (used by the server's upload). Raises ImageError."""
        self._require_writable()
        extracted = extract_one(str(Path(path).absolute()), self.extractor)
        features = extracted.features
        item = _new_image(extracted)
        with self._mutex:
            old = self._catalog.find_path(item.path)
            ids = self._commit([item], [features], [old.id] if old else [], [], None)
            self.refresh()
        return ids[0]

    def remove(self, ids: Sequence[int]) -> int:
        """Remove images by id; returns how many were in the index."""
        self._require_writable()
        with self._mutex:
            present = [i for i in ids if self._catalog.get(i) is not None]
            if present:
                self._catalog.write_batch(remove_ids=present)
                self._vectors_remove(present)
                self.refresh()
        return len(present)

    def _commit(
        self,
        items: list[NewImage],
        features: list[Features] | None,
        replaced: list[int],
        skipped: list[tuple[Skipped, int | None, int | None]],
        on_features: Callable[[int, Features], None] | None,
    ) -> list[int]:
        if not items and not skipped and not replaced:
            return []
        with self._mutex:
            if items and self._manifest.dim is None:
                self._manifest.dim = int(items[0].descriptor.shape[0])
                write_manifest(self.path, self._manifest)
            ids = self._catalog.write_batch(add=items, remove_ids=replaced, skipped=skipped)
            if on_features is not None and features is not None:
                for image_id, feats in zip(ids, features, strict=True):
                    on_features(image_id, feats)
            self._vectors_remove(replaced)
            if self._vectors is not None and items and self.settings.dba:
                # augmented vectors depend on their neighbours: rebuild them all on refresh
                self._vectors = None
            if self._vectors is not None and items:
                raw = np.stack([i.descriptor for i in items])
                self._vectors.add(np.asarray(ids, dtype=np.int64), self._transform(raw))
                self._vectors_generation = self._catalog.generation
        return ids

    def _vectors_remove(self, ids: Sequence[int]) -> None:
        if self._vectors is not None and ids and self.settings.dba:
            self._vectors = None  # neighbours of the removed ones change: rebuild on refresh
        if self._vectors is not None and ids:
            if self._vectors.remove(np.asarray(ids, dtype=np.int64)):
                self._vectors_generation = self._catalog.generation
            else:
                self._vectors = None  # this index type cannot remove: rebuild on refresh

    def refresh(self) -> None:
        """Bring derived state (whitening, FAISS index) in line with the catalog and save it."""
        with self._mutex:
            n = self._catalog.count()
            retrained = self._maybe_retrain_whitening(n)
            key, params = self._wanted_key(n)
            generation = self._catalog.generation
            if self._vectors is None and not retrained:
                self._load_saved_vectors(key, generation)
            stale = (
                retrained
                or self._vectors is None
                or self._vectors.key != key
                or self._vectors_generation != generation
            )
            if stale:
                self._vectors = self._build_vectors(key, params) if n or self.search_dim else None
                self._vectors_generation = generation
            retuned = self._vectors is not None and self._vectors.params != params
            if retuned:
                self._vectors.set_params(params)  # same index, search knobs for the new size
            if self.writable and self._vectors is not None:
                if stale or retuned or self._manifest.index_generation != generation:
                    self._vectors.save(self.path / VECTORS_NAME)
                    self._manifest.index_key = key
                    self._manifest.index_params = params
                    self._manifest.index_generation = generation
                    write_manifest(self.path, self._manifest)

    def _load_saved_vectors(self, key: str, generation: int) -> None:
        """Use the FAISS file on disk when it is current (saves a rebuild, which with DBA
        means a neighbour search over the whole collection)."""
        m = self._manifest
        file = self.path / VECTORS_NAME
        if m.index_key == key and m.index_generation == generation and file.exists():
            try:
                self._vectors = VectorIndex.load(
                    file, m.index_key, self.search_dim, m.index_params, mmap=self.mmap
                )
            except IndexCorruptError as exc:
                log.warning("rebuilding the vector index: %s", exc)
                return
            self._vectors_generation = generation

    def _maybe_retrain_whitening(self, n: int) -> bool:
        s = self.settings
        dim = self._manifest.dim
        if not s.whiten_dim or dim is None:
            return False
        out_dim = min(s.whiten_dim, dim)
        current = self._manifest.whitening
        if not whitening_allowed(n, out_dim):
            return False
        if current is not None and n < WHITENING_RETRAIN_GROWTH * current.trained_on:
            return False
        # normalized in place: at 100k x 1280 every copy of the sample is 0.5 GB
        sample = self._catalog.sample_descriptors(TRAIN_SAMPLE)
        sample /= np.sqrt(np.einsum("ij,ij->i", sample, sample))[:, None] + 1e-6
        whitening = fit_whitening(sample, out_dim)
        whitening.save(self.path / "whitening.npz")
        self._whitening = whitening
        self._whitening_loaded = True
        self._manifest.whitening = WhiteningState(
            kind=whitening.kind, dim=out_dim, trained_on=len(sample)
        )
        write_manifest(self.path, self._manifest)
        log.info("trained whitening %d -> %d on %d images", dim, out_dim, len(sample))
        return True

    @property
    def whitening(self) -> Whitening | None:
        if not self._whitening_loaded:
            state = self._manifest.whitening
            self._whitening = Whitening.load(self.path / state.file) if state else None
            self._whitening_loaded = True
        return self._whitening

    @property
    def search_dim(self) -> int | None:
        return self._manifest.search_dim

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw descriptors (n, D) or (D,) -> search vectors (n, d): whitening (if trained), L2."""
        return self._transform(raw)

    def _transform(self, raw: np.ndarray) -> np.ndarray:
        raw = l2n(np.atleast_2d(np.asarray(raw, dtype=np.float32)))
        w = self.whitening
        return w.apply(raw) if w is not None else raw

    def _wanted_key(self, n: int) -> tuple[str, str]:
        """The FAISS key for `n` vectors: the forced one (settings.index_key) or the automatic
        choice; either way exact search ("Flat") until there are enough vectors to train it."""
        s = self.settings
        if s.index_key:
            key, params = s.index_key, s.index_params
        else:
            key, params = choose_index_key(n, self.search_dim or 1)
        if needs_training(key) and n < min_training_vectors(key):
            return "Flat", ""
        return key, params

    def _build_vectors(self, key: str, params: str) -> VectorIndex:
        dim = self.search_dim
        if dim is None:
            raise ConfigError("the index is empty: nothing to search yet")
        index = VectorIndex(key, dim, params)
        if not index.is_trained:
            index.train(self._transform(self._catalog.sample_descriptors(TRAIN_SAMPLE)))
        dba = parse_expansion(self.settings.dba)
        if dba is not None:
            return self._add_augmented(index, dba)
        for ids, raw in self._catalog.iter_descriptors():
            index.add(ids, self._transform(raw))
        return index

    def _add_augmented(self, index: VectorIndex, spec: Expansion) -> VectorIndex:
        """Database-side augmentation: add each search vector as the weighted mean of itself
        and its `spec.n` nearest neighbours (lookalike.postprocess.qe.dba_batches). The
        neighbours come from an exact search in batches, or, for an approximate index type,
        from a temporary index of that type (so the cost follows the collection's index)."""
        from lookalike.postprocess.qe import dba_batches

        parts = [(ids, self._transform(raw)) for ids, raw in self._catalog.iter_descriptors()]
        if not parts:
            return index
        ids = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        del parts
        neighbours = None
        if needs_training(index.key):
            scratch = VectorIndex(index.key, index.dim, index.params)
            scratch.train(self._transform(self._catalog.sample_descriptors(TRAIN_SAMPLE)))
            scratch.add(np.arange(len(x), dtype=np.int64), x)
            neighbours = scratch.search
        for start, rows in dba_batches(x, spec, neighbours=neighbours):
            index.add(ids[start : start + len(rows)], rows)
        log.info("database-side augmentation (%s) of %d vectors", spec, len(x))
        return index

    def _ensure_vectors(self) -> VectorIndex | None:
        with self._mutex:
            generation = self._catalog.generation
            if self._vectors is not None and self._vectors_generation == generation:
                return self._vectors
            m = self._manifest
            file = self.path / VECTORS_NAME
            if m.index_key and m.index_generation == generation and file.exists():
                self._vectors = VectorIndex.load(
                    file, m.index_key, self.search_dim, m.index_params, mmap=self.mmap
                )
                self._vectors_generation = generation
                return self._vectors
            if self._catalog.count() == 0:
                return None
            # Stale or missing (an interrupted sync, a crash): rebuild from the catalog.
            log.info("rebuilding the vector index of %s from its catalog", self.path)
            if self.writable:
                self.refresh()
            else:
                key, params = self._wanted_key(self._catalog.count())
                self._vectors = self._build_vectors(key, params)
                self._vectors_generation = generation
            return self._vectors

    def _require_writable(self) -> None:
        if not self.writable:
            raise ConfigError(f"{self.path}: index is open read-only")

    # -- searching ---------------------------------------------------------------------------

    def describe(
        self,
        image: str | Path | Image.Image,
        *,
        box: tuple[float, float, float, float] | None = None,
    ) -> np.ndarray:
        """The raw descriptor of an image file or a PIL image, with this index's settings.
        With `box` (x0, y0, x1, y1 in the image's own pixels), only that region is described."""
        if not isinstance(image, Image.Image):
            image = load_image(image, None if box is not None else self.settings.max_side)
        if box is not None:
            image = crop_box(image, box)
        return self.extractor.describe_image(image).descriptor

    def search(
        self,
        query: str | Path | Image.Image | np.ndarray,
        k: int = 10,
        *,
        min_score: float | None = None,
        box: tuple[float, float, float, float] | None = None,
        expand: str | Expansion | None = None,
        localize: bool = False,
        rerank: bool = False,
        tag: str | None = None,
        tag_mode: str = "filter",
    ) -> list[Hit]:
        """Search by an image file, a PIL image or a raw descriptor. An indexed query file is
        left out of its own results. `box` restricts the query to a region of the image.

        `expand` applies query expansion ("aqe:n=3" or "alpha-qe:n=3,alpha=3"); `localize`
        fills each top hit's `box` with where the query object sits in it (approximate
        max-pooling localization, re-running the CNN on the top `LOCALIZE_MAX` results);
        `rerank` also re-orders those hits by that region's score (and reports it as score).
        """
        exclude: list[int] = []
        if isinstance(query, np.ndarray):
            raw = query
        else:
            raw = self.describe(query, box=box)
            if isinstance(query, str | Path):
                with self._mutex:
                    record = self._catalog.find_path(str(Path(query).expanduser().absolute()))
                if record is not None:
                    exclude.append(record.id)
        return self.search_vector(
            raw,
            k,
            min_score=min_score,
            exclude=exclude,
            tag=tag,
            tag_mode=tag_mode,
            expand=expand,
            localize=localize,
            rerank=rerank,
        )

    def search_id(
        self,
        image_id: int,
        k: int = 10,
        *,
        min_score: float | None = None,
        expand: str | Expansion | None = None,
        localize: bool = False,
        rerank: bool = False,
        tag: str | None = None,
        tag_mode: str = "filter",
    ) -> list[Hit]:
        """Search by an indexed image (left out of its own results); options as `search`."""
        with self._mutex:
            raw = self._catalog.descriptor(image_id)
        if raw is None:
            raise ConfigError(f"no image with id {image_id} in {self.path}")
        return self.search_vector(
            raw,
            k,
            min_score=min_score,
            exclude=[image_id],
            tag=tag,
            tag_mode=tag_mode,
            expand=expand,
            localize=localize,
            rerank=rerank,
        )

    def search_vector(
        self,
        raw: np.ndarray,
        k: int = 10,
        *,
        min_score: float | None = None,
        exclude: Sequence[int] = (),
        expand: str | Expansion | None = None,
        localize: bool = False,
        rerank: bool = False,
        tag: str | None = None,
        tag_mode: str = "filter",
    ) -> list[Hit]:
        """Search by a raw descriptor; options as `search`."""
        spec = parse_expansion(expand)
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if tag is not None:
            from lookalike.tags import search_tagged

            # with expansion: the query is expanded over the whole collection, then its
            # shortlist (the top max(20k, 500)) is filtered or boosted by the tag
            options = {"expand": spec} if spec is not None else {}
            hits = search_tagged(
                self,
                raw,
                k,
                tag=tag,
                tag_mode=tag_mode,
                min_score=min_score,
                exclude=exclude,
                **options,
            )
            return self._localize(raw, hits, rerank) if localize or rerank else hits
        raw = np.asarray(raw, dtype=np.float32).reshape(-1)
        if self._manifest.dim is not None and raw.shape[0] != self._manifest.dim:
            raise IndexMismatchError(
                f"query descriptor has dimension {raw.shape[0]}, index has {self._manifest.dim}"
            )
        vectors = self._ensure_vectors()
        if vectors is None:
            return []
        query = self._transform(raw)
        skip = set(exclude)
        if spec is not None:
            query = self._expand(vectors, query, spec, skip)
        scores, ids = vectors.search(query, k + len(exclude))
        pairs = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) not in skip and (min_score is None or s >= min_score)
        ][:k]
        hits = hits_with_tags(self, pairs)
        if localize or rerank:
            hits = self._localize(raw, hits, rerank)
        return hits

    def _expand(
        self, vectors: VectorIndex, query: np.ndarray, spec: Expansion, skip: set[int]
    ) -> np.ndarray:
        from lookalike.postprocess.qe import expand

        scores, ids = vectors.search(query, spec.n + len(skip))
        top = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        top = [(i, s) for i, s in top if i not in skip][: spec.n]
        if not top:
            return query
        with self._mutex:
            raws = [self._catalog.descriptor(i) for i, _ in top]
        keep = [(r, s) for r, (_, s) in zip(raws, top, strict=True) if r is not None]
        neighbours = self._transform(np.stack([r for r, _ in keep]))
        if self.settings.dba:
            # expand with the database's own (augmented) vectors, as stored in FAISS
            try:
                ids = [i for (i, _), r in zip(top, raws, strict=True) if r is not None]
                neighbours = np.stack([vectors.faiss_index.reconstruct(i) for i in ids])
            except RuntimeError:
                log.debug("this FAISS index cannot reconstruct; expanding with plain vectors")
        sims = np.array([s for _, s in keep])
        return expand(query[0], neighbours, sims, spec.alpha)[None]

    def _localize(self, raw: np.ndarray, hits: list[Hit], rerank: bool) -> list[Hit]:
        from dataclasses import replace

        from lookalike.postprocess.localize import localize_file

        out = []
        for hit in hits[:LOCALIZE_MAX]:
            try:
                score, box = localize_file(self.extractor, raw, hit.path)
            except ImageError as exc:
                log.warning("cannot localize in %s: %s", hit.path, exc)
                out.append((hit.score if not rerank else -1.0, hit))
                continue
            out.append((score, replace(hit, box=box, score=score if rerank else hit.score)))
        if rerank:
            out.sort(key=lambda t: -t[0])
        return [h for _, h in out] + hits[LOCALIZE_MAX:]

    def get(self, image_id: int) -> ImageRecord | None:
        with self._mutex:
            return self._catalog.get(image_id)

    # -- words (tags, text search, classification, duplicates) ------------------------------

    def search_text(self, text: str, k: int = 10, *, min_score: float | None = None) -> list[Hit]:
        """Images whose content matches the words ("bicycle", "a cup of coffee"), ranked by the
        probability the CNN gave the matching ImageNet classes (that mass is the `score`)."""
        from lookalike.tags import search_text

        return search_text(self, text, k, min_score=min_score)

    def classify(self, image: str | Path | Image.Image, k: int = 5) -> list:
        """The top-k ImageNet classes (lookalike.labels.Label) of an image file or PIL image."""
        from lookalike.labels import top_labels

        if not isinstance(image, Image.Image):
            image = load_image(image, self.settings.max_side)
        return top_labels(self.extractor.describe_image(image).logits, k)

    def duplicates(self, threshold: float | None = None, **options) -> list:
        """Groups of exact and near-duplicate images (see lookalike.dupes.find_duplicates)."""
        from lookalike.dupes import find_duplicates

        return find_duplicates(self, threshold=threshold, **options)

    # -- information -------------------------------------------------------------------------

    def info(self) -> dict:
        with self._mutex:
            count = self._catalog.count()
            skipped = len(self._catalog.skipped())
        s = self.settings
        m = self._manifest
        key, _ = (m.index_key, m.index_params) if m.index_key else self._wanted_key(count)
        return {
            "path": str(self.path),
            "count": count,
            "skipped": skipped,
            "model": s.model,
            "descriptor": s.descriptor,
            "max_side": s.max_side,
            "scales": list(s.scales),
            "dim": m.search_dim,
            "raw_dim": m.dim,
            "whitening": m.whitening.model_dump() if m.whitening else None,
            "index_key": key,
            "index_params": m.index_params,
            "dba": s.dba,
            "size_bytes": sum(f.stat().st_size for f in self.path.iterdir() if f.is_file()),
            "format_version": m.format_version,
            "lookalike_version": m.lookalike_version,
        }


# -- helpers -----------------------------------------------------------------------------------


def _new_image(item: Extracted) -> NewImage:
    """What the catalog stores for an extracted file: its facts, descriptor and top classes."""
    return NewImage(
        item.path,
        item.size,
        item.mtime_ns,
        item.hash,
        item.width,
        item.height,
        item.features.descriptor,
        top_classes(item.features.logits),
    )


def _resolve_dir(d: str | Path) -> Path:
    path = Path(d).expanduser().absolute()
    if not path.exists():
        raise ConfigError(f"{d}: folder not found")
    if not path.is_dir():
        raise ConfigError(f"{d}: not a folder")
    return path


def _is_under(path: str, root: Path) -> bool:
    root_s = str(root)
    return path == root_s or path.startswith(root_s.rstrip(os.sep) + os.sep)


def _is_create_leftover(name: str) -> bool:
    """A file an interrupted `create` can leave before the manifest (written last) exists."""
    if name in (LOCK_NAME, CATALOG_NAME) or name.startswith(CATALOG_NAME + "-"):
        return True
    return name.startswith(MANIFEST_NAME + ".") and name.endswith(".tmp")


def _check_settings(settings: IndexSettings) -> None:
    from lookalike.backbone import MODELS
    from lookalike.pooling import parse_descriptor

    if settings.model not in MODELS:
        raise ConfigError(f"unknown model {settings.model!r}; choose one of {', '.join(MODELS)}")
    parse_descriptor(settings.descriptor)
    if settings.index_key:
        VectorIndex(settings.index_key, 8 if "PQ" not in settings.index_key else 64)


def _check_same(built: IndexSettings, wanted: IndexSettings, path: Path) -> None:
    diffs = [
        f"{name}={getattr(wanted, name)!r} (index has {getattr(built, name)!r})"
        for name in IndexSettings.model_fields
        if getattr(built, name) != getattr(wanted, name)
    ]
    if diffs:
        raise IndexMismatchError(f"{path}: index was built with other settings: {'; '.join(diffs)}")


def _acquire_lock(path: Path) -> int:
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexLockedError(f"{path}: another process is writing to this index") from None
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
