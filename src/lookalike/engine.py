"""The index as users know it: a directory to create, sync with folders, and search.

    idx = Index.open_or_create("photos.idx")
    report = idx.sync(["~/Pictures"])
    hits = idx.search("query.jpg", k=10)

`Index` is a facade over one module per job:
    index/store.py     the directory: lock, catalog, manifest, settings checks
    index/derived.py   whitening and the FAISS index, rebuilt from the catalog when stale
    sync.py            writes: folder sync (plan, then batched commits), vectors, uploads
    search.py          Hit, SearchOptions and the search verbs
    tags.py, dupes.py  words on an index and the duplicate finder
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.errors import ConfigError
from lookalike.executors import Executor
from lookalike.extract import Extractor, Features
from lookalike.images import load_image
from lookalike.index.catalog import Catalog, ImageRecord
from lookalike.index.derived import TRAIN_SAMPLE, Derived
from lookalike.index.manifest import IndexSettings, Manifest
from lookalike.index.store import CATALOG_NAME, LOCK_NAME, VECTORS_NAME, Store, is_index
from lookalike.index.vectors import VectorIndex
from lookalike.postprocess.qe import Expansion
from lookalike.search import LOCALIZE_MAX, Box, Hit, Searcher, SearchOptions, TextHits
from lookalike.sync import DEFAULT_BATCH, SyncProgress, SyncReport, Writer
from lookalike.whitening_check import copy_describer

if TYPE_CHECKING:
    from lookalike.whitening import Whitening

__all__ = [
    "CATALOG_NAME",
    "DEFAULT_BATCH",
    "LOCALIZE_MAX",
    "LOCK_NAME",
    "TRAIN_SAMPLE",
    "VECTORS_NAME",
    "Hit",
    "Index",
    "IndexSettings",
    "SearchOptions",
    "SyncProgress",
    "SyncReport",
    "is_index",
]


class Index:
    """An index directory. Open with `Index.open`, `Index.create` or `Index.open_or_create`."""

    def __init__(self, store: Store, *, mmap: bool = False):
        self.store = store
        self.derived = Derived(store, mmap=mmap)
        self._extractor: Extractor | None = None
        self.derived.describe_copies = copy_describer(lambda: self.extractor, store.catalog)
        self.searcher = Searcher(store, self.derived, lambda: self.extractor)
        self.writer = Writer(store, self.derived, lambda: self.extractor)

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, settings: IndexSettings | None = None) -> Index:
        """Create a new, empty index directory (it may exist but must be empty)."""
        return cls(Store.create(path, settings))

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
        return cls(Store.open(path, writable=writable, settings=settings), mmap=mmap)

    @classmethod
    def open_or_create(cls, path: str | Path, settings: IndexSettings | None = None) -> Index:
        """Open for writing, creating the index with `settings` (or defaults) if missing."""
        if is_index(Path(path).expanduser()):
            return cls.open(path, writable=True, settings=settings)
        return cls.create(path, settings)

    def close(self) -> None:
        self.derived.close()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_settings(self, **given: object) -> None:
        """Raise IndexMismatchError when any given setting differs from the index's own."""
        self.store.check_settings(**given)

    # -- properties --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def writable(self) -> bool:
        return self.store.writable

    @property
    def mmap(self) -> bool:
        return self.derived.mmap

    @property
    def lock(self):  # noqa: ANN201 - threading.RLock is not a class
        """The lock under which every catalog access and derived-state change happens."""
        return self.store.lock

    @property
    def settings(self) -> IndexSettings:
        return self.store.settings

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    @property
    def extractor(self) -> Extractor:
        if self._extractor is None:
            self._extractor = Extractor.from_settings(self.settings)
        return self._extractor

    @property
    def whitening(self) -> Whitening | None:
        return self.derived.whitening

    @property
    def search_dim(self) -> int | None:
        return self.derived.search_dim

    def __len__(self) -> int:
        with self.store.lock:
            return self.store.catalog.count()

    def get(self, image_id: int) -> ImageRecord | None:
        with self.store.lock:
            return self.store.catalog.get(image_id)

    # -- writing (lookalike.sync) ------------------------------------------------------------

    def sync(
        self,
        dirs: Iterable[str | Path],
        *,
        progress: Callable[[SyncProgress], None] | None = None,
        batch_size: int = DEFAULT_BATCH,
        on_features: Callable[[int, Features], None] | None = None,
        executor: str | Executor | None = None,
    ) -> SyncReport:
        """Bring the index in line with folders: add new images, re-embed changed ones, remove
        ones that are gone. Work is committed every `batch_size` images, so an interrupted sync
        loses at most one batch and the next one resumes.

        `executor` says where decoding and the CNN run: None or "local" (this machine), "ray"
        (a local Ray instance), "ray:ADDRESS" (a Ray cluster), or an Executor object
        (lookalike.executors). Results come back to this process, the single writer.
        """
        return self.writer.sync(
            dirs,
            progress=progress,
            batch_size=batch_size,
            on_features=on_features,
            executor=executor,
        )

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
        return self.writer.add_vectors(paths, vectors, refresh=refresh)

    def add_image(self, path: str | Path) -> int:
        """Index one image file now (used by the server's upload). Raises ImageError."""
        return self.writer.add_image(path)

    def remove(self, ids: Sequence[int]) -> int:
        """Remove images by id; returns how many were in the index."""
        return self.writer.remove(ids)

    # -- derived state (lookalike.index.derived) ---------------------------------------------

    def refresh(self) -> None:
        """Bring derived state (whitening, FAISS index) in line with the catalog and save it."""
        self.derived.refresh()

    def vector_index(self) -> VectorIndex | None:
        """The FAISS index of the current catalog, loaded or rebuilt (None when empty)."""
        return self.derived.vector_index()

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw descriptors (n, D) or (D,) -> search vectors (n, d): whitening (if trained), L2."""
        return self.derived.transform(raw)

    # -- searching (lookalike.search) --------------------------------------------------------

    def describe(self, image: str | Path | Image.Image, *, box: Box | None = None) -> np.ndarray:
        """The raw descriptor of an image file or a PIL image, with this index's settings.
        With `box` (x0, y0, x1, y1 in the image's own pixels), only that region is described."""
        return self.searcher.describe(image, box=box)

    def search(
        self,
        query: str | Path | Image.Image | np.ndarray,
        k: int = 10,
        *,
        min_score: float | None = None,
        box: Box | None = None,
        expand: str | Expansion | None = None,
        localize: bool = False,
        rerank: bool = False,
        tag: str | None = None,
        tag_mode: str = "filter",
        options: SearchOptions | None = None,
    ) -> list[Hit]:
        """Search by an image file, a PIL image or a raw descriptor. An indexed query file is
        left out of its own results. `box` restricts the query to a region of the image.

        `expand` applies query expansion ("aqe:n=3" or "alpha-qe:n=3,alpha=3"); `localize`
        fills each top hit's `box` with where the query object sits in it (approximate
        max-pooling localization, re-running the CNN on the top `LOCALIZE_MAX` results);
        `rerank` also re-orders those hits by that region's score (and reports it as score);
        `tag` keeps ("filter") or favours ("boost") images whose classes match its words.
        `options` (a SearchOptions) replaces all of these keyword arguments but `box`.
        """
        if options is None:
            options = SearchOptions(
                min_score=min_score,
                expand=expand,
                localize=localize,
                rerank=rerank,
                tag=tag,
                tag_mode=tag_mode,
            )
        return self.searcher.search(query, k, options, box=box)

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
        options: SearchOptions | None = None,
    ) -> list[Hit]:
        """Search by an indexed image (left out of its own results); options as `search`."""
        if options is None:
            options = SearchOptions(
                min_score=min_score,
                expand=expand,
                localize=localize,
                rerank=rerank,
                tag=tag,
                tag_mode=tag_mode,
            )
        return self.searcher.search_id(image_id, k, options)

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
        options: SearchOptions | None = None,
    ) -> list[Hit]:
        """Search by a raw descriptor; options as `search`."""
        if options is None:
            options = SearchOptions(
                min_score=min_score,
                expand=expand,
                localize=localize,
                rerank=rerank,
                tag=tag,
                tag_mode=tag_mode,
            )
        return self.searcher.search_vector(raw, k, options, exclude=exclude)

    # -- words (tags, text search, classification, duplicates) ------------------------------

    def search_text(self, text: str, k: int = 10, *, min_score: float | None = None) -> TextHits:
        """Images whose content matches the words ("bicycle", "a cup of coffee"), ranked by the
        probability the CNN gave the matching ImageNet classes (that mass is the `score`).
        The result is a list of Hit that also carries `match` (the classes the words meant,
        the nearest ones) and `note` (why it is empty, when it is)."""
        return self.searcher.search_text(text, k, min_score=min_score)

    def classify(self, image: str | Path | Image.Image, k: int = 5) -> list:
        """The top-k ImageNet classes (lookalike.labels.Label) of an image file or PIL image."""
        from lookalike.labels import top_labels

        if not isinstance(image, Image.Image):
            image = load_image(image, self.settings.max_side)
        return top_labels(self.extractor.describe_image(image).logits, k)

    def duplicates(self, **options) -> list:
        """Groups of exact, near-duplicate and (with similar=True) similar images
        (see lookalike.dupes.find_duplicates for the options)."""
        from lookalike.dupes import find_duplicates

        return find_duplicates(self, **options)

    # -- information -------------------------------------------------------------------------

    def info(self) -> dict:
        with self.store.lock:
            count = self.store.catalog.count()
            skipped = len(self.store.catalog.skipped())
        s = self.settings
        m = self.manifest
        key = m.index_key if m.index_key else self.derived.wanted_key(count)[0]
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
            "whitening_check": m.whitening_check,
            "index_key": key,
            "index_params": m.index_params,
            "dba": s.dba,
            **self.derived.backend.describe(),
            "size_bytes": self.store.size_bytes(),
            "format_version": m.format_version,
            "lookalike_version": m.lookalike_version,
        }
