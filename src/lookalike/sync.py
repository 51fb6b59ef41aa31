"""Writing to an index: folder sync, precomputed vectors, single uploads, removals.

A sync runs in two steps:
  1. `plan_sync` compares the folders with the catalog's file states and decides, without
     writing anything, what to add, re-embed, update in place (same content, new mtime),
     remove, or forget as skipped. It stats files and hashes the ones whose mtime changed.
  2. `Writer.sync` applies the plan: removals first, then the images to embed, committed every
     `batch_size` images (catalog + FAISS together), so an interrupted sync loses at most one
     batch and the next one resumes. Then derived state is refreshed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError, ImageError, IndexMismatchError
from lookalike.executors import Executor, resolve_executor
from lookalike.extract import Extractor, Features
from lookalike.images import image_size, iter_image_files
from lookalike.index.catalog import NewImage, Skipped
from lookalike.index.derived import Derived
from lookalike.index.store import Store
from lookalike.labels import top_classes
from lookalike.pipeline import Extracted, extract_one, file_hash, os_reason
from lookalike.pooling import l2n

DEFAULT_BATCH = 32  # images per committed batch of a sync

FeaturesHook = Callable[[int, Features], None]


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
    embed_seconds: float = 0.0  # the embedding phase alone (decode + CNN), model loading excluded

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    @property
    def images_per_second(self) -> float:
        """Embedding speed: images embedded per second of the embedding phase."""
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "count": self.count,
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """Passed to a sync's progress callback when a phase starts and after each embedded file.
    `phase` is one of SYNC_PHASES; `done`/`total` count files in the "embedding" phase."""

    done: int
    total: int
    path: str
    phase: str = "embedding"


SYNC_PHASES = ("listing", "loading model", "embedding", "training whitening", "building index")


@dataclass(frozen=True, slots=True)
class Todo:
    """A file to embed: new (`replaces` None) or changed (`replaces` its old catalog id)."""

    path: str
    size: int
    mtime_ns: int
    replaces: int | None = None


@dataclass(slots=True)
class SyncPlan:
    """What a sync will do; computed by `plan_sync` without writing anything."""

    todo: list[Todo] = field(default_factory=list)
    touched: list[tuple[int, int, int]] = field(default_factory=list)  # (id, size, mtime_ns)
    remove: list[int] = field(default_factory=list)  # ids whose files are gone
    forget_skipped: list[str] = field(default_factory=list)  # skipped files that are gone
    unchanged: int = 0
    unreadable: list[Skipped] = field(default_factory=list)  # files that could not be stat'ed
    # named like images but not regular files (FIFOs, broken links): recorded as skipped
    not_regular: list[Skipped] = field(default_factory=list)


def plan_sync(
    roots: Sequence[Path],
    known: dict[str, tuple[int, int, int, str]],
    skipped: Iterable[str],
    *,
    exclude: Path | None = None,
) -> SyncPlan:
    """Compare the image files under `roots` with the catalog's `known` file states
    (path -> (id, size, mtime_ns, hash)) and `skipped` paths. Files under `exclude` (the index's
    own directory: uploads, thumbnails) are not photos and are left out."""
    plan = SyncPlan()
    seen: set[str] = set()

    def not_regular(file: Path, reason: str) -> None:  # FIFOs, broken links: never opened
        if exclude is None or not _is_under(str(file), exclude):
            plan.unreadable.append(Skipped(str(file), reason))
            plan.not_regular.append(plan.unreadable[-1])

    for file in iter_image_files(roots, on_skip=not_regular):
        path = str(file)
        if exclude is not None and _is_under(path, exclude):
            continue
        seen.add(path)
        try:
            st = file.stat()
        except OSError as exc:
            plan.unreadable.append(Skipped(path, os_reason(exc)))
            continue
        state = known.get(path)
        if state is None:
            plan.todo.append(Todo(path, st.st_size, st.st_mtime_ns))
            continue
        image_id, size, mtime_ns, content_hash = state
        if size == st.st_size and mtime_ns == st.st_mtime_ns:
            plan.unchanged += 1
            continue
        try:
            same = size == st.st_size and file_hash(path) == content_hash
        except OSError:
            same = False
        if same:
            plan.touched.append((image_id, st.st_size, st.st_mtime_ns))
            plan.unchanged += 1
        else:
            plan.todo.append(Todo(path, st.st_size, st.st_mtime_ns, image_id))

    def gone(path: str) -> bool:
        return path not in seen and any(_is_under(path, root) for root in roots)

    plan.remove = [state[0] for path, state in known.items() if gone(path)]
    plan.forget_skipped = [path for path in skipped if gone(path)]
    return plan


@dataclass(slots=True)
class _Batch:
    items: list[NewImage] = field(default_factory=list)
    features: list[Features] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    skipped: list[tuple[Skipped, int | None, int | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items) + len(self.skipped)


class Writer:
    """Every write to an index: catalog rows and the in-memory FAISS index change together,
    under the store's lock."""

    def __init__(self, store: Store, derived: Derived, extractor: Callable[[], Extractor]):
        self.store = store
        self.derived = derived
        self._extractor = extractor

    def sync(
        self,
        dirs: Iterable[str | Path],
        *,
        progress: Callable[[SyncProgress], None] | None = None,
        batch_size: int = DEFAULT_BATCH,
        on_features: FeaturesHook | None = None,
        executor: str | Executor | None = None,
    ) -> SyncReport:
        with contextlib.ExitStack() as stack:
            return self._sync(dirs, progress, batch_size, on_features, executor, stack)

    def _sync(self, dirs, progress, batch_size, on_features, executor, stack) -> SyncReport:
        store = self.store
        store.require_writable()
        start = time.perf_counter()
        roots = [_resolve_dir(d) for d in dirs]
        phase = _phase_reporter(progress)
        phase("listing")
        with store.lock:
            known = store.catalog.file_states()
            skipped = list(store.catalog.skipped_states())
        plan = plan_sync(roots, known, skipped, exclude=store.path)
        report = SyncReport(unchanged=plan.unchanged, skipped=list(plan.unreadable))
        if plan.remove:
            self.derived.before_writes()
        with store.lock:
            store.catalog.update_file_states(plan.touched)
            if plan.forget_skipped:
                store.catalog.write_batch(clear_skipped=plan.forget_skipped)
            if plan.not_regular:
                store.catalog.write_batch(skipped=[(s, None, None) for s in plan.not_regular])
            if plan.remove:
                store.catalog.write_batch(remove_ids=plan.remove)
                self.derived.removed(plan.remove)
                report.removed = len(plan.remove)

        total = len(plan.todo)
        batch = _Batch()
        extractor = self._extractor()
        runner, owned = resolve_executor(executor)
        if owned:
            stack.callback(runner.close)
        if total:  # nothing to embed: the model (or a Ray cluster) is not even started
            phase("loading model")
            runner.prepare(extractor)
        phase("embedding", total)
        embed_start = time.perf_counter()
        results = runner.extract([t.path for t in plan.todo], extractor) if total else ()
        for done, (item, todo) in enumerate(zip(results, plan.todo, strict=True), 1):
            if isinstance(item, ImageError):
                skip = Skipped(todo.path, item.reason)
                report.skipped.append(skip)
                batch.skipped.append((skip, todo.size, todo.mtime_ns))
                if todo.replaces is not None:  # changed into something unreadable (truncated
                    batch.replaced.append(todo.replaces)  # in place): its old record goes
                    report.removed += 1
            else:
                batch.items.append(new_image(item))
                batch.features.append(item.features)
                if todo.replaces is None:
                    report.added += 1
                else:
                    report.updated += 1
                    batch.replaced.append(todo.replaces)
            if progress is not None:
                progress(SyncProgress(done, total, todo.path, "embedding"))
            if len(batch) >= batch_size:
                self.commit(batch.items, batch.features, batch.replaced, batch.skipped, on_features)
                batch = _Batch()
        self.commit(batch.items, batch.features, batch.replaced, batch.skipped, on_features)
        report.embed_seconds = time.perf_counter() - embed_start if total else 0.0
        phase("building index", total)
        self.derived.on_phase = phase  # whitening training, when it happens, is its own phase
        try:
            self.derived.refresh()
        finally:
            self.derived.on_phase = None
        with store.lock:
            report.count = store.catalog.count()
            # the folders syncs cover and when the last one ended (the server's status panel)
            store.catalog.record_sync([str(r) for r in roots], time.time())
        report.seconds = time.perf_counter() - start
        return report

    def add_vectors(
        self, paths: Sequence[str | Path], vectors: np.ndarray, *, refresh: bool = True
    ) -> list[int]:
        store = self.store
        store.require_writable()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(paths):
            raise ConfigError(
                f"expected {len(paths)} vectors as a 2-d array, got shape {vectors.shape}"
            )
        dim = store.manifest.dim
        if dim is not None and vectors.shape[1] != dim:
            raise IndexMismatchError(
                f"{store.path}: vectors have dimension {vectors.shape[1]}, index has {dim}"
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
        with store.lock:
            replaced = [r.id for r in (store.catalog.find_path(i.path) for i in items) if r]
            ids = self.commit(items, None, replaced, [], None)
            if refresh:
                self.derived.refresh()
        return ids

    def add_image(self, path: str | Path) -> int:
        store = self.store
        store.require_writable()
        extracted = extract_one(str(Path(path).absolute()), self._extractor())
        item = new_image(extracted)
        with store.lock:
            old = store.catalog.find_path(item.path)
            ids = self.commit([item], [extracted.features], [old.id] if old else [], [], None)
            self.derived.refresh()
        return ids[0]

    def remove(self, ids: Sequence[int]) -> int:
        store = self.store
        store.require_writable()
        with store.lock:
            present = [i for i in ids if store.catalog.get(i) is not None]
            if present:
                self.derived.before_writes()
                store.catalog.write_batch(remove_ids=present)
                self.derived.removed(present)
                self.derived.refresh()
        return len(present)

    def commit(
        self,
        items: list[NewImage],
        features: list[Features] | None,
        replaced: list[int],
        skipped: list[tuple[Skipped, int | None, int | None]],
        on_features: FeaturesHook | None,
    ) -> list[int]:
        """Write one batch to the catalog (one transaction) and the in-memory FAISS index."""
        if not items and not skipped and not replaced:
            return []
        store = self.store
        with store.lock:
            self.derived.before_writes()
            if items and store.manifest.dim is None:
                store.manifest.dim = int(items[0].descriptor.shape[0])
                store.save_manifest()
            ids = store.catalog.write_batch(add=items, remove_ids=replaced, skipped=skipped)
            if on_features is not None and features is not None:
                for image_id, feats in zip(ids, features, strict=True):
                    on_features(image_id, feats)
            self.derived.removed(replaced)
            if items:
                self.derived.added(ids, np.stack([i.descriptor for i in items]))
        return ids


def new_image(item: Extracted) -> NewImage:
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
        item.phash,
    )


def _phase_reporter(progress: Callable[[SyncProgress], None] | None) -> Callable[..., None]:
    def phase(name: str, total: int = 0) -> None:
        if progress is not None:
            progress(SyncProgress(0, total, "", name))

    return phase


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
