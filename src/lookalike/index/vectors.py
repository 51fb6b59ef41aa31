"""The FAISS side of an index: which index type, and a thin wrapper that keeps our ids.

The index type is described by a FAISS factory string (`"Flat"`, `"IVF4096,PQ64x4fs,RFlat"`,
`"HNSW32,Flat"`), optionally followed by search-time parameters in FAISS's own syntax
(`"nprobe=32,k_factor_rf=8"`). Vectors are compared by inner product; lookalike stores
L2-normalized vectors, so scores are cosine similarities.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from lookalike.errors import ConfigError, DiskFullError, IndexCorruptError, is_disk_full

# Up to this many vectors, exact search is fast enough (a few ms a query at 100k x 256-d on two
# cores, recall 1) and needs no training; above it an inverted file of 4-bit fast-scan PQ codes
# whose shortlist (k x k_factor_rf) is re-ranked with the full vectors (RFlat). Measured in
# benchmarks/search_scale.py (see BENCHMARKS.md, "Search at scale").
EXACT_SEARCH_MAX = 100_000
# Inverted lists: about 2 sqrt(N), a power of two, at most MAX_NLIST so that k-means trains on
# the engine's 100k-vector sample (FAISS wants ~39 vectors a list) in well under a minute.
# 1M clustered 256-d, recall@10 (BENCHMARKS.md, "Search at scale"): IVF1024 0.953 at nprobe
# 128, 0.972 at 192; IVF2048 0.960 at 128, 0.973 at 192, scanning half as many codes.
MAX_NLIST = 2048
NPROBE = 192
K_FACTOR_RF = 8
# Past 1M vectors the lists stay at MAX_NLIST and grow longer, so a fixed nprobe loses recall
# (10M, nprobe 192: 0.818). nprobe grows with sqrt(N / 1M) from there (10M: 607; measured in
# BENCHMARKS.md, "Search at scale": nprobe 384 gives 0.921, 768 gives 0.981).
NPROBE_REFERENCE_N = 1_000_000


def choose_index_key(n: int, dim: int) -> tuple[str, str]:
    """The FAISS factory string and search parameters lookalike uses for `n` vectors of `dim`."""
    if n <= EXACT_SEARCH_MAX:
        return "Flat", ""
    nlist = min(MAX_NLIST, 1 << int(round(math.log2(2 * math.sqrt(n)))))
    m = _pq_subquantizers(dim)
    nprobe = min(nlist, round(NPROBE * math.sqrt(max(1.0, n / NPROBE_REFERENCE_N))))
    return f"IVF{nlist},PQ{m}x4fs,RFlat", f"nprobe={nprobe},k_factor_rf={K_FACTOR_RF}"


def _pq_subquantizers(dim: int) -> int:
    # x4fs PQ wants an even number of sub-quantizers that divides the dimension;
    # aim for about 4 dimensions each.
    for m in range(max(2, dim // 4), 1, -1):
        if dim % m == 0 and m % 2 == 0:
            return m
    return 2


def needs_training(key: str) -> bool:
    return key.split(",")[0] != "Flat" and not key.startswith("HNSW")


def min_training_vectors(key: str) -> int:
    """Vectors FAISS needs to train `key` (roughly: 39 per IVF list / PQ centroid)."""
    need = 1
    for part in key.split(","):
        if part.startswith("IVF"):
            digits = "".join(ch for ch in part[3:] if ch.isdigit())
            need = max(need, int(digits or 1) * 39)
        if part.startswith("PQ"):
            need = max(need, 16 * 39 if "x4" in part else 256 * 39)
    return need


class VectorIndex:
    """A FAISS index of L2-normalized vectors keyed by catalog ids."""

    def __init__(self, key: str, dim: int, params: str = "") -> None:
        import faiss

        self.key = key
        self.dim = dim
        self.params = params
        try:
            self._index = faiss.index_factory(dim, f"IDMap2,{key}", faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(f"invalid FAISS factory string {key!r}: {_first_line(exc)}") from exc
        self._apply_params()

    @classmethod
    def from_faiss(cls, index: object, key: str, dim: int, params: str) -> VectorIndex:
        self = cls.__new__(cls)
        self.key, self.dim, self.params = key, dim, params
        self._index = index
        self._apply_params()
        return self

    def _apply_params(self) -> None:
        if not self.params:
            return
        import faiss

        try:
            faiss.ParameterSpace().set_index_parameters(self._index, self.params)
        except RuntimeError as exc:
            raise ConfigError(
                f"invalid FAISS search parameters {self.params!r} for {self.key!r}: "
                f"{_first_line(exc)}"
            ) from exc

    def set_params(self, params: str) -> None:
        """Change the search-time parameters (e.g. a larger nprobe as the collection grows)."""
        self.params = params
        self._apply_params()

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def faiss_index(self) -> object:
        """The underlying FAISS index (for callers that want FAISS directly)."""
        return self._index

    def train(self, vectors: np.ndarray) -> None:
        if self._index.is_trained:
            return
        vectors = _as_f32(vectors, self.dim)
        need = min_training_vectors(self.key)
        if len(vectors) < need:
            raise ConfigError(
                f"FAISS index {self.key!r} needs at least {need} vectors to train, "
                f"got {len(vectors)}; use a smaller index or 'Flat'"
            )
        self._index.train(vectors)
        self._apply_params()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self._index.add_with_ids(_as_f32(vectors, self.dim), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; False when this index type cannot remove (the caller rebuilds)."""
        if len(ids) == 0:
            return True
        try:
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
        except RuntimeError:
            return False
        return True

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores (q, k), ids (q, k)); missing results have id -1."""
        queries = _as_f32(np.atleast_2d(queries), self.dim)
        k = max(1, min(int(k), max(self.ntotal, 1)))
        if len(queries) > 1:
            return self._index.search(queries, k)
        # One query: FAISS would only parallelize over queries, and its idle OpenMP threads'
        # barrier stalls the call 5-20 ms whenever another process holds a core (measured:
        # p90 5-8 ms with 2 threads, 0.46 ms with 1, same p50). One thread it is; the setting
        # is the calling thread's own (OpenMP ICV), so concurrent searches are unaffected.
        import faiss

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self._index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(before)

    def save(self, path: str | Path, *, stamp: str | None = None) -> None:
        """Write atomically: a temporary file in the same folder, fsync, then rename. `stamp`
        (the index's identity and generation) is appended after FAISS's own bytes, which FAISS
        ignores when reading; `load` checks it. A full disk raises DiskFullError and leaves the
        previous file as it was."""
        import faiss

        path = Path(path)
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.close(fd)
            faiss.write_index(self._index, tmp)
            with open(tmp, "rb+") as fh:
                if stamp is not None:
                    fh.seek(0, os.SEEK_END)
                    fh.write(_stamp_bytes(stamp))
                    fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except (OSError, RuntimeError) as exc:
            if is_disk_full(exc):
                raise DiskFullError(path, "write the FAISS index") from None
            raise
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(
        cls,
        path: str | Path,
        key: str,
        dim: int,
        params: str,
        *,
        mmap: bool = False,
        stamp: str | None = None,
    ):
        """Read a saved index. With `stamp`, refuse (IndexCorruptError) a file that does not
        carry that stamp: a file of another index, or of another generation of this one."""
        import faiss

        if stamp is not None:
            found = read_stamp(path)
            if found != stamp:
                raise IndexCorruptError(
                    f"{path}: the FAISS file belongs to another index or generation "
                    f"(stamp {found or 'missing'}, expected {stamp})"
                )

        # IO_FLAG_MMAP maps inverted lists, IO_FLAG_MMAP_IFC flat code arrays (Flat, the RFlat
        # re-ranking vectors): neither is copied into memory; a mapped index is read-only.
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexCorruptError(f"{path}: cannot read the FAISS index") from exc
        if index.d != dim:
            raise IndexCorruptError(f"{path}: FAISS index has dimension {index.d}, expected {dim}")
        return cls.from_faiss(index, key, dim, params)


def _as_f32(vectors: np.ndarray, dim: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ConfigError(f"expected vectors of dimension {dim}, got shape {vectors.shape}")
    return vectors


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


_STAMP_MAGIC = b"LOOKALIKE-STAMP1"
_STAMP_TAIL = len(_STAMP_MAGIC) + 4


def _stamp_bytes(stamp: str) -> bytes:
    data = stamp.encode("ascii")
    return data + len(data).to_bytes(4, "little") + _STAMP_MAGIC


def read_stamp(path: str | Path) -> str | None:
    """The stamp `VectorIndex.save` appended to a FAISS file, or None when it has none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size < _STAMP_TAIL:
                return None
            fh.seek(size - _STAMP_TAIL)
            tail = fh.read(_STAMP_TAIL)
            if tail[4:] != _STAMP_MAGIC:
                return None
            length = int.from_bytes(tail[:4], "little")
            if length > 256 or length > size - _STAMP_TAIL:
                return None
            fh.seek(size - _STAMP_TAIL - length)
            return fh.read(length).decode("ascii", "replace")
    except OSError:
        return None
