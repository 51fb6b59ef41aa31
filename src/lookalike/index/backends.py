"""Where an index keeps its search vectors: a FAISS file (the default) or a Milvus collection.

The setting `store` names the backend, once, when the index is created:
    "faiss"                    vectors.faiss in the index directory (embedded; the default)
    "milvus"                   Milvus Lite, file vectors.milvus.db in the index directory
    "milvus:/data/vectors.db"  Milvus Lite in that file (one process at a time)
    "milvus:http://host:19530" a Milvus server or cluster (token from $MILVUS_TOKEN)

Either way the catalog stays the source of truth and the vectors are derived state
(index/derived.py): a backend makes new indexes, opens the saved one and saves. Both kinds of
index answer the same calls (add, remove, search, set_params), with the catalog's ids.

A Milvus backend keeps each build in its own collection (`lookalike_<uid>_<n>`) and switches
the manifest to it only once it is complete and flushed; older collections of the index are
then dropped. A crash mid-build therefore leaves the previous collection in use.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.index.milvus import SERVER_SCHEMES
from lookalike.index.store import VECTORS_NAME
from lookalike.index.vectors import (
    VectorIndex,
    choose_index_key,
    min_training_vectors,
    needs_training,
)

log = logging.getLogger(__name__)

MILVUS_LITE_NAME = "vectors.milvus.db"


def parse_store(spec: str) -> str:
    """Normalize a store spec (see the module doc); raises ConfigError. A Milvus Lite path is
    made absolute, so the setting means the same file from any working directory."""
    spec = (spec or "").strip()
    if spec in ("", "faiss"):
        return "faiss"
    name, _, uri = spec.partition(":")
    if name != "milvus":
        raise ConfigError(
            f"unknown store {spec!r}: expected 'faiss', 'milvus' (Milvus Lite in the index "
            "directory), 'milvus:PATH.db' (Milvus Lite) or 'milvus:http://HOST:19530' (a server)"
        )
    uri = uri.strip()
    if not uri:
        return "milvus"
    if uri.startswith(SERVER_SCHEMES):
        return f"milvus:{uri}"
    if not uri.endswith(".db"):
        raise ConfigError(f"store {spec!r}: a Milvus Lite file name must end with '.db'")
    return f"milvus:{os.path.abspath(os.path.expanduser(uri))}"


def milvus_uri(spec: str, index_dir: Path) -> str:
    """The URI MilvusClient takes for a normalized "milvus[...]" store spec."""
    uri = spec.partition(":")[2]
    return uri or str(index_dir / MILVUS_LITE_NAME)


class FaissBackend:
    """vectors.faiss next to the catalog."""

    name = "faiss"
    # a FAISS index is rebuilt in memory at the end of a sync unless already loaded
    load_before_writes = False

    def __init__(self, store) -> None:
        self.store = store

    def choose(self, n: int, dim: int) -> tuple[str, str]:
        return choose_index_key(n, dim)

    def needs_training(self, key: str) -> bool:
        return needs_training(key)

    def min_training_vectors(self, key: str) -> int:
        return min_training_vectors(key)

    def new(self, key: str, dim: int, params: str) -> VectorIndex:
        return VectorIndex(key, dim, params)

    def load(
        self, key: str, dim: int, params: str, *, mmap: bool = False, stamp: str | None = None
    ) -> VectorIndex | None:
        """The saved index, None when there is none; IndexCorruptError when unreadable or,
        with `stamp`, not carrying it (another index's file, or another generation's)."""
        file = self.store.path / VECTORS_NAME
        if not file.exists():
            return None
        return VectorIndex.load(file, key, dim, params, mmap=mmap, stamp=stamp)

    def save(self, index: VectorIndex, *, stamp: str | None = None) -> None:
        index.save(self.store.path / VECTORS_NAME, stamp=stamp)

    def describe(self) -> dict:
        return {"store": "faiss"}

    def close(self) -> None:
        pass


class MilvusBackend:
    """A Milvus collection (Milvus Lite file or server), one per build of the index."""

    name = "milvus"
    # writes go to the saved collection itself: open it first, never re-insert everything
    load_before_writes = True

    def __init__(self, store) -> None:
        self.store = store
        self.uri = milvus_uri(store.settings.store, store.path)
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from lookalike.index.milvus import connect

            self._client = connect(self.uri)
        return self._client

    def choose(self, n: int, dim: int) -> tuple[str, str]:
        from lookalike.index.milvus import choose_milvus_key

        return choose_milvus_key(n, dim)

    def needs_training(self, key: str) -> bool:
        return False  # Milvus trains each segment's index itself

    def min_training_vectors(self, key: str) -> int:
        return 1

    def new(self, key: str, dim: int, params: str):
        """A new collection for a build; a read-only open (which must not write to Milvus)
        gets an exact in-memory FAISS index instead, for the time it is open."""
        from lookalike.index.milvus import MilvusIndex

        if not self.store.writable:
            log.warning(
                "%s: the Milvus collection is behind the catalog (an interrupted write?); "
                "searching an in-memory copy until the index is next opened for writing",
                self.store.path,
            )
            return VectorIndex("Flat", dim)
        return MilvusIndex.create(self.client, self._next_name(), key, dim, params)

    def load(
        self, key: str, dim: int, params: str, *, mmap: bool = False, stamp: str | None = None
    ):
        """The index's own collection (named with the index's uid: `stamp` is not needed)."""
        from lookalike.index.milvus import MilvusIndex

        name = self.store.manifest.vector_collection
        if name is None:
            return None
        return MilvusIndex.open(self.client, name, key, dim, params)

    def save(self, index, *, stamp: str | None = None) -> None:
        """Flush; make `index`'s collection the index's own; drop the ones it replaces."""
        if isinstance(index, VectorIndex):  # a read-only open's in-memory copy
            return
        index.flush()
        manifest = self.store.manifest
        if manifest.vector_collection != index.collection:
            manifest.vector_collection = index.collection
            self.store.save_manifest()
        prefix = index.collection.rsplit("_", 1)[0] + "_"
        for name in self.client.list_collections():
            if name.startswith(prefix) and name != index.collection:
                log.info("dropping the replaced Milvus collection %s", name)
                self.client.drop_collection(name)

    def _next_name(self) -> str:
        current = self.store.manifest.vector_collection
        if current is None:
            return f"lookalike_{uuid.uuid4().hex[:12]}_1"
        base, _, n = current.rpartition("_")
        try:
            return f"{base}_{int(n) + 1}"
        except ValueError as exc:
            raise IndexCorruptError(f"unexpected Milvus collection name {current!r}") from exc

    def describe(self) -> dict:
        return {
            "store": self.store.settings.store,
            "milvus_uri": self.uri,
            "collection": self.store.manifest.vector_collection,
        }

    def close(self) -> None:
        if self._client is not None:
            from lookalike.index.milvus import disconnect

            try:
                disconnect(self._client, self.uri)
            finally:
                self._client = None


def backend_for(store) -> FaissBackend | MilvusBackend:
    """The backend named by the index's `store` setting."""
    if store.settings.store == "faiss":
        return FaissBackend(store)
    return MilvusBackend(store)
