"""Vectors in Milvus: a collection with the catalog's ids, behind VectorIndex's interface.

The index type is described like FAISS's factory string, in Milvus's words: the index type and
its build parameters (`"FLAT"`, `"IVF_SQ8,nlist=2048"`, `"HNSW,M=16,efConstruction=200"`),
and search parameters (`"nprobe=64"`, `"ef=128"`). Vectors are compared by inner product
(metric "IP"); lookalike stores L2-normalized vectors, so scores are cosine similarities.

`MilvusIndex` holds a pymilvus `MilvusClient` and one collection (fields `id` INT64 primary key,
`vector` FLOAT_VECTOR). With a local file URI (".db") the client runs Milvus Lite, an embedded
Milvus (one process at a time per file); with `http://host:19530` it talks to a Milvus server
or cluster, which any number of processes may share.
"""

from __future__ import annotations

import logging
import math
import os
import threading

import numpy as np

from lookalike.errors import ConfigError, IndexCorruptError, IndexLockedError

log = logging.getLogger(__name__)

# Like the FAISS choice (index/vectors.py): exact search up to 100k vectors, then an inverted
# file. IVF_SQ8 keeps one byte a dimension (4x less memory than FLAT); nlist about 2 sqrt(N)
# (a power of two, at most 4096) and nprobe as measured in benchmarks/milvus_vs_faiss.py
# (BENCHMARKS.md, "Milvus").
EXACT_SEARCH_MAX = 100_000
MAX_NLIST = 4096
NPROBE = 64
INSERT_BATCH = 2_000  # rows per insert call (gRPC messages stay well under 64 MB)
SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://", "unix:")
TOKEN_ENV = "MILVUS_TOKEN"  # "user:password" or an API key, for servers that want one
INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX", "DISKANN", "SCANN")


def choose_milvus_key(n: int, dim: int) -> tuple[str, str]:
    """The Milvus index type (with build parameters) and search parameters for `n` vectors."""
    if n <= EXACT_SEARCH_MAX:
        return "FLAT", ""
    nlist = min(MAX_NLIST, 1 << int(round(math.log2(2 * math.sqrt(n)))))
    return f"IVF_SQ8,nlist={nlist}", f"nprobe={min(nlist, NPROBE)}"


def parse_milvus_key(key: str) -> tuple[str, dict]:
    """ "IVF_SQ8,nlist=1024" -> ("IVF_SQ8", {"nlist": 1024}); raises ConfigError."""
    parts = [p.strip() for p in key.split(",") if p.strip()]
    if not parts or parts[0].upper() not in INDEX_TYPES:
        raise ConfigError(
            f"invalid Milvus index type {key!r}: expected one of {', '.join(INDEX_TYPES)}, "
            "optionally followed by build parameters ('IVF_SQ8,nlist=1024')"
        )
    return parts[0].upper(), parse_params(",".join(parts[1:]), what=f"Milvus index {key!r}")


def parse_params(text: str, *, what: str = "Milvus search parameters") -> dict:
    """ "nprobe=64,ef=32" -> {"nprobe": 64, "ef": 32} (numbers where they parse)."""
    out: dict = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ConfigError(f"{what}: expected name=value, got {part!r}")
        value = value.strip()
        try:
            out[name.strip()] = int(value)
        except ValueError:
            try:
                out[name.strip()] = float(value)
            except ValueError:
                out[name.strip()] = value
    return out


_lite_users: dict[str, int] = {}  # Milvus Lite file -> clients of this process using it
_lite_lock = threading.Lock()


def connect(uri: str):
    """A MilvusClient for `uri`: Milvus Lite for a local ".db" file, else a server. Give it
    back with `disconnect(client, uri)`."""
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as exc:
        raise ConfigError(
            "the milvus store needs pymilvus: pip install 'lookalike[scale]'"
        ) from exc
    if not uri.startswith(SERVER_SCHEMES):
        _quiet_lite_server()
    token = os.environ.get(TOKEN_ENV, "")
    try:
        client = MilvusClient(uri, token=token) if token else MilvusClient(uri)
    except MilvusException as exc:
        if not uri.startswith(SERVER_SCHEMES):
            raise IndexLockedError(
                f"{uri}: cannot open this Milvus Lite file ({exc.message}); Milvus Lite allows "
                "one process at a time - close the other one, or use a Milvus server"
            ) from exc
        raise ConfigError(f"cannot connect to Milvus at {uri}: {exc.message}") from exc
    if not uri.startswith(SERVER_SCHEMES):
        with _lite_lock:
            _lite_users[os.path.abspath(uri)] = _lite_users.get(os.path.abspath(uri), 0) + 1
    return client


def disconnect(client, uri: str) -> None:
    """Close a client from `connect`. The last one of this process on a Milvus Lite file also
    stops the embedded server, which releases the file for other processes."""
    client.close()
    if uri.startswith(SERVER_SCHEMES):
        return
    path = os.path.abspath(uri)
    with _lite_lock:
        left = _lite_users.get(path, 1) - 1
        if left > 0:
            _lite_users[path] = left
            return
        _lite_users.pop(path, None)
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # an older milvus-lite: the file is released when the process exits
        return
    server_manager_instance.release_server(path)


class _NotImplementedFilter(logging.Filter):
    """Milvus Lite's in-process gRPC server logs a traceback for each call it does not
    implement (pymilvus asks for AllocTimestamp when creating a collection, then carries on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage() and not (
            record.exc_info and isinstance(record.exc_info[1], NotImplementedError)
        )


class _LockedFilter(logging.Filter):
    """milvus-lite logs a traceback when another process holds the file; `connect` raises a
    clear IndexLockedError for that instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to start MilvusLite server" not in record.getMessage()


def _quiet_lite_server() -> None:
    for name, kind in (
        ("grpc._server", _NotImplementedFilter),
        ("milvus_lite.server_manager", _LockedFilter),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


class MilvusIndex:
    """A Milvus collection of L2-normalized vectors keyed by catalog ids."""

    def __init__(self, client, collection: str, key: str, dim: int, params: str = "") -> None:
        self.client = client
        self.collection = collection
        self.key = key
        self.dim = int(dim)
        self.params = params
        self._index_type, self._build_params = parse_milvus_key(key)
        self._search_params = parse_params(params)

    @classmethod
    def create(cls, client, collection: str, key: str, dim: int, params: str = "") -> MilvusIndex:
        """A new, empty collection (an existing one of that name is dropped first)."""
        from pymilvus import DataType

        self = cls(client, collection, key, dim, params)
        if client.has_collection(collection):
            client.drop_collection(collection)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name="vector",
            index_type=self._index_type,
            metric_type="IP",
            params=self._build_params,
        )
        client.create_collection(collection, schema=schema, index_params=index_params)
        return self

    @classmethod
    def open(cls, client, collection: str, key: str, dim: int, params: str = "") -> MilvusIndex:
        """An existing collection; raises IndexCorruptError when missing or of another shape."""
        if not client.has_collection(collection):
            raise IndexCorruptError(f"Milvus collection {collection!r} does not exist")
        info = client.describe_collection(collection)
        dims = [
            f.get("params", {}).get("dim") for f in info.get("fields", []) if f["name"] == "vector"
        ]
        if not dims or int(dims[0]) != int(dim):
            raise IndexCorruptError(
                f"Milvus collection {collection!r} has vectors of dimension {dims}, expected {dim}"
            )
        self = cls(client, collection, key, dim, params)
        client.load_collection(collection)
        return self

    def set_params(self, params: str) -> None:
        self._search_params = parse_params(params)
        self.params = params

    @property
    def ntotal(self) -> int:
        stats = self.client.get_collection_stats(self.collection)
        return int(stats.get("row_count", 0))

    @property
    def is_trained(self) -> bool:
        return True  # Milvus trains its index itself as segments are sealed

    def train(self, vectors: np.ndarray) -> None:
        pass

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = _as_f32(vectors, self.dim)
        for start in range(0, len(ids), INSERT_BATCH):
            rows = [
                {"id": int(i), "vector": v}
                for i, v in zip(
                    ids[start : start + INSERT_BATCH],
                    vectors[start : start + INSERT_BATCH],
                    strict=True,
                )
            ]
            self.client.insert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> bool:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        if ids:
            self.client.delete(self.collection, ids=ids)
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k), ids (q, k)); missing results have id -1, as FAISS gives them."""
        queries = _as_f32(np.atleast_2d(queries), self.dim)
        k = max(1, int(k))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(queries) == 0:
            return scores, ids
        result = self.client.search(
            self.collection,
            data=list(queries),
            limit=min(k, 16_384),  # Milvus's topk limit
            search_params={"metric_type": "IP", "params": self._search_params},
            output_fields=[],
        )
        for row, hits in enumerate(result):
            for col, hit in enumerate(hits):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def flush(self) -> None:
        """Make every insert and delete durable and visible to other clients."""
        self.client.flush(self.collection)

    def drop(self) -> None:
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)


def _as_f32(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ConfigError(f"expected vectors of dimension {dim}, got shape {vectors.shape}")
    return vectors
