"""The SQLite catalog: the source of truth of an index.

One row per indexed image (path, size, mtime, content hash, width, height, when added, raw
descriptor), one row per skipped file with its reason, and a small key/value `meta` table. Every
write happens in a transaction that also bumps `meta.generation`, so derived state (the FAISS
index, the whitening) can tell whether it is up to date.
"""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import IndexCorruptError

SCHEMA_VERSION = 3
DESCRIPTOR_DTYPE = np.float16

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    path       TEXT NOT NULL UNIQUE,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    added_at   REAL NOT NULL,
    descriptor BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
CREATE TABLE IF NOT EXISTS skipped (
    path       TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    size       INTEGER,
    mtime_ns   INTEGER,
    skipped_at REAL NOT NULL
);
"""

# Step-by-step migrations: MIGRATIONS[v] upgrades a catalog from version v to v + 1.
# v2: `labels`, the top ImageNet classes of each image (written with the image row; a v1
# catalog upgrades with an empty table and its images get labels when re-embedded).
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS labels (
        image_id INTEGER NOT NULL,
        rank     INTEGER NOT NULL,
        class_id INTEGER NOT NULL,
        prob     REAL NOT NULL,
        PRIMARY KEY (image_id, rank)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS labels_class ON labels(class_id, prob);
    """,
    # v3: the perceptual hash of each image and of its mirror (lookalike.verify.phash), computed
    # from the same decode as the descriptor; NULL for images indexed before (the duplicate
    # finder then hashes the file itself).
    2: """
    ALTER TABLE images ADD COLUMN phash INTEGER;
    ALTER TABLE images ADD COLUMN phash_mirror INTEGER;
    """,
}


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """One indexed image as the catalog knows it."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    added_at: float


@dataclass(frozen=True, slots=True)
class NewImage:
    """An image ready to be written: its file facts and its raw descriptor."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    descriptor: np.ndarray
    labels: Sequence[tuple[int, float]] | None = None  # top (ImageNet class id, prob), best first
    phash: tuple[int, int] | None = None  # (pHash, pHash of the mirror), unsigned 64-bit


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


_RECORD_COLUMNS = "id, path, size, mtime_ns, hash, width, height, added_at"


def _encode(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=DESCRIPTOR_DTYPE).tobytes()


def _signed64(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def _encode_phash(pair: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """SQLite integers are signed 64-bit: store the unsigned hashes' bit patterns."""
    if pair is None:
        return None, None
    return _signed64(pair[0]), _signed64(pair[1])


def path_to_db(path: str) -> str | bytes:
    """How a path is stored: as TEXT when it is valid UTF-8, else as the file name's raw bytes
    (a BLOB). Python gives an undecodable file name as a str with surrogate escapes
    (os.fsdecode); SQLite cannot store those as TEXT, and the bytes are lossless."""
    if not isinstance(path, str):
        return path
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_from_db(value: str | bytes) -> str:
    """The inverse of path_to_db: a path str, surrogate-escaped where its bytes are not UTF-8."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _record(row: Sequence) -> ImageRecord:
    return ImageRecord(row[0], path_from_db(row[1]), *row[2:])


class Catalog:
    """A SQLite database file. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        try:
            if readonly:
                uri = f"file:{self.path.as_posix()}?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            if not readonly:
                self._migrate()
            elif int(self._get_meta("schema_version") or 0) < SCHEMA_VERSION:
                self._upgrade_then_reopen_readonly()
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise IndexCorruptError(f"{self.path}: cannot read the catalog ({exc})") from exc

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._transaction():
            for statement in _SCHEMA_V1.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            version = self._get_meta("schema_version")
            if version is None:  # a new catalog: v1 tables above, then every migration
                self._set_meta("schema_version", "1")
                self._set_meta("generation", "0")
                version = "1"
            current = int(version)
            while current < SCHEMA_VERSION:
                for statement in MIGRATIONS[current].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                current += 1
                self._set_meta("schema_version", str(current))

    def _upgrade_then_reopen_readonly(self) -> None:
        """A read-only open of a catalog written by an older lookalike: migrate it once through
        a short-lived writable connection (SQLite serializes this against any writer)."""
        self._db.close()
        try:
            Catalog(self.path).close()
        except (sqlite3.OperationalError, IndexCorruptError) as exc:
            raise IndexCorruptError(
                f"{self.path}: the catalog was written by an older lookalike and must be "
                f"upgraded, but it cannot be written here ({exc}); open it once with write access"
            ) from exc
        uri = f"file:{self.path.as_posix()}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")

    def _check_version(self) -> None:
        version = self._get_meta("schema_version")
        if version is None or int(version) > SCHEMA_VERSION:
            raise IndexCorruptError(
                f"{self.path}: catalog schema version {version} is not supported "
                f"(this lookalike reads up to {SCHEMA_VERSION})"
            )

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *_: object) -> None:
            if exc_type is None:
                self.db.execute("COMMIT")
            elif self.db.in_transaction:  # SQLite may have rolled back already (disk full)
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report

    def _transaction(self) -> Catalog._Tx:
        return Catalog._Tx(self._db)

    # -- meta --------------------------------------------------------------------------------

    def _get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _bump(self) -> None:
        self._db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
        )

    @property
    def generation(self) -> int:
        """Incremented by every committed change of images; derived state stores the value it
        was built from."""
        value = self._get_meta("generation")
        return int(value or 0)

    # -- writes ------------------------------------------------------------------------------

    def write_batch(
        self,
        *,
        add: Sequence[NewImage] = (),
        remove_ids: Sequence[int] = (),
        skipped: Sequence[tuple[Skipped, int | None, int | None]] = (),
        clear_skipped: Sequence[str] = (),
    ) -> list[int]:
        """Apply one batch atomically: remove ids, insert or replace images, record skipped files.

        Returns the new ids of `add`, in order. A replaced path gets a new id (its descriptor
        changed), and its old row is removed in the same transaction.
        """
        now = time.time()
        new_ids: list[int] = []
        with self._transaction():
            if remove_ids:
                self._db.executemany("DELETE FROM images WHERE id = ?", [(i,) for i in remove_ids])
                self._db.executemany(
                    "DELETE FROM labels WHERE image_id = ?", [(i,) for i in remove_ids]
                )
            for item in add:
                self._db.execute(
                    "DELETE FROM labels WHERE image_id IN (SELECT id FROM images WHERE path = ?)",
                    (path_to_db(item.path),),
                )
                self._db.execute("DELETE FROM images WHERE path = ?", (path_to_db(item.path),))
                cursor = self._db.execute(
                    "INSERT INTO images(path, size, mtime_ns, hash, width, height, added_at,"
                    " descriptor, phash, phash_mirror) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        path_to_db(item.path),
                        item.size,
                        item.mtime_ns,
                        item.hash,
                        item.width,
                        item.height,
                        now,
                        _encode(item.descriptor),
                        *_encode_phash(item.phash),
                    ),
                )
                new_ids.append(int(cursor.lastrowid))
                if item.labels:
                    self._db.executemany(
                        "INSERT INTO labels(image_id, rank, class_id, prob) VALUES (?, ?, ?, ?)",
                        [
                            (new_ids[-1], rank, int(c), float(p))
                            for rank, (c, p) in enumerate(item.labels)
                        ],
                    )
                self._db.execute("DELETE FROM skipped WHERE path = ?", (path_to_db(item.path),))
            for entry, size, mtime_ns in skipped:
                self._db.execute(
                    "INSERT INTO skipped(path, reason, size, mtime_ns, skipped_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET"
                    " reason = excluded.reason, size = excluded.size,"
                    " mtime_ns = excluded.mtime_ns, skipped_at = excluded.skipped_at",
                    (path_to_db(entry.path), entry.reason, size, mtime_ns, now),
                )
            if clear_skipped:
                self._db.executemany(
                    "DELETE FROM skipped WHERE path = ?", [(path_to_db(p),) for p in clear_skipped]
                )
            if add or remove_ids:
                self._bump()
        return new_ids

    def update_file_states(self, states: Sequence[tuple[int, int, int]]) -> None:
        """Record a new (size, mtime) for images whose content did not change."""
        if not states:
            return
        with self._transaction():
            self._db.executemany(
                "UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?",
                [(size, mtime_ns, image_id) for image_id, size, mtime_ns in states],
            )

    # -- reads -------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def get(self, image_id: int) -> ImageRecord | None:
        row = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM images WHERE id = ?", (int(image_id),)
        ).fetchone()
        return None if row is None else _record(row)

    def get_many(self, ids: Iterable[int]) -> dict[int, ImageRecord]:
        ids = [int(i) for i in ids]
        out: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM images WHERE id IN ({marks})", chunk
            ):
                out[row[0]] = _record(row)
        return out

    def find_path(self, path: str) -> ImageRecord | None:
        row = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM images WHERE path = ?", (path_to_db(path),)
        ).fetchone()
        return None if row is None else _record(row)

    def find_hash(self, content_hash: str) -> list[ImageRecord]:
        rows = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM images WHERE hash = ? ORDER BY id", (content_hash,)
        ).fetchall()
        return [_record(row) for row in rows]

    def records(self) -> Iterator[ImageRecord]:
        cursor = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM images ORDER BY id")
        for row in cursor:
            yield _record(row)

    def ids_under(self, folder: str) -> dict[str, int]:
        """path -> id of the images whose path is inside `folder` (a range scan of the path
        index, not a walk over every record)."""
        where, params = _under_folder(folder)
        rows = self._db.execute(f"SELECT id, path FROM images {where}", params)
        return {path_from_db(path): int(image_id) for image_id, path in rows}

    def file_states(self) -> dict[str, tuple[int, int, int, str]]:
        """path -> (id, size, mtime_ns, hash) for every indexed image (used by sync)."""
        return {
            path_from_db(row[1]): (row[0], row[2], row[3], row[4])
            for row in self._db.execute("SELECT id, path, size, mtime_ns, hash FROM images")
        }

    def skipped_states(self) -> dict[str, tuple[int | None, int | None, str]]:
        return {
            path_from_db(row[0]): (row[1], row[2], row[3])
            for row in self._db.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        }

    def skipped(self) -> list[Skipped]:
        rows = self._db.execute("SELECT path, reason FROM skipped ORDER BY path").fetchall()
        return [Skipped(path_from_db(path), reason) for path, reason in rows]

    def labels(self, ids: Iterable[int]) -> dict[int, list[tuple[int, float]]]:
        """image id -> its stored (class id, prob) pairs, best first (missing ids: no entry)."""
        ids = [int(i) for i in ids]
        out: dict[int, list[tuple[int, float]]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for image_id, class_id, prob in self._db.execute(
                f"SELECT image_id, class_id, prob FROM labels WHERE image_id IN ({marks})"
                " ORDER BY image_id, rank",
                chunk,
            ):
                out.setdefault(image_id, []).append((class_id, prob))
        return out

    def paths_and_labels(self, ids: Sequence[int]) -> dict[int, tuple[str, list]]:
        """image id -> (path, its stored (class id, prob) pairs best first), in one query:
        what a search result needs (missing ids: no entry)."""
        ids = [int(i) for i in ids]
        out: dict[int, tuple[str, list]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for image_id, path, class_id, prob in self._db.execute(
                "SELECT i.id, i.path, l.class_id, l.prob FROM images i"
                f" LEFT JOIN labels l ON l.image_id = i.id WHERE i.id IN ({marks})"
                " ORDER BY i.id, l.rank",
                chunk,
            ):
                entry = out.get(image_id)
                if entry is None:
                    entry = out[image_id] = (path_from_db(path), [])
                if class_id is not None:
                    entry[1].append((class_id, prob))
        return out

    def search_labels(self, weights: dict[int, float], k: int) -> list[tuple[int, float]]:
        """Images ranked by the weighted probability mass on the given classes:
        score = sum over matched classes of weight * prob. Returns (image id, score), best
        first. Uses the index on labels(class_id)."""
        if not weights or k < 1:
            return []
        items = list(weights.items())
        values = ",".join("(?, ?)" for _ in items)
        params: list[float] = [x for pair in items for x in (int(pair[0]), float(pair[1]))]
        rows = self._db.execute(
            f"WITH q(class_id, weight) AS (VALUES {values}) "
            "SELECT l.image_id, SUM(q.weight * l.prob) AS score "
            "FROM q JOIN labels l ON l.class_id = q.class_id "
            "GROUP BY l.image_id ORDER BY score DESC, l.image_id LIMIT ?",
            [*params, int(k)],
        ).fetchall()
        return [(int(i), float(s)) for i, s in rows]

    def unlabelled_count(self) -> int:
        """Images without stored labels (from a v1 catalog or added as bare vectors)."""
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM images WHERE id NOT IN (SELECT image_id FROM labels)"
            ).fetchone()[0]
        )

    def hash_groups(self) -> Iterator[list[ImageRecord]]:
        """Groups of two or more images with the same content hash (exact duplicates)."""
        cursor = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM images WHERE hash != '' AND hash IN ("
            "SELECT hash FROM images WHERE hash != '' GROUP BY hash HAVING COUNT(*) > 1)"
            " ORDER BY hash, id"
        )
        group: list[ImageRecord] = []
        for row in cursor:
            record = _record(row)
            if group and group[0].hash != record.hash:
                yield group
                group = []
            group.append(record)
        if len(group) > 1:
            yield group

    def phashes(self, ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """image id -> (pHash, pHash of the mirror) as unsigned 64-bit ints, for the given ids
        that have them (images indexed before catalog v3, or added as bare vectors, do not)."""
        ids = [int(i) for i in ids]
        out: dict[int, tuple[int, int]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for image_id, h, hm in self._db.execute(
                f"SELECT id, phash, phash_mirror FROM images WHERE id IN ({marks})"
                " AND phash IS NOT NULL",
                chunk,
            ):
                out[image_id] = (h % (1 << 64), hm % (1 << 64))
        return out

    def descriptors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids found int64 (n,), raw descriptors float32 (n, D)) for the given ids."""
        found: list[int] = []
        vectors: list[np.ndarray] = []
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for image_id, blob in self._db.execute(
                f"SELECT id, descriptor FROM images WHERE id IN ({marks})", chunk
            ):
                found.append(image_id)
                vectors.append(np.frombuffer(blob, dtype=DESCRIPTOR_DTYPE))
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.asarray(found, dtype=np.int64), np.stack(vectors).astype(np.float32)

    def descriptor(self, image_id: int) -> np.ndarray | None:
        row = self._db.execute(
            "SELECT descriptor FROM images WHERE id = ?", (int(image_id),)
        ).fetchone()
        if row is None:
            return None
        return np.frombuffer(row[0], dtype=DESCRIPTOR_DTYPE).astype(np.float32)

    def iter_descriptors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64 (n,), descriptors float32 (n, D)) in id order, `batch` at a time."""
        last = -1
        while True:
            rows = self._db.execute(
                "SELECT id, descriptor FROM images WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch),
            ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.stack([np.frombuffer(r[1], dtype=DESCRIPTOR_DTYPE) for r in rows]).astype(
                np.float32
            )
            yield ids, vectors
            last = int(ids[-1])

    def sample_descriptors(self, limit: int, seed: int = 0) -> np.ndarray:
        """Up to `limit` raw descriptors spread over the collection (for training whitening or
        an approximate index)."""
        n = self.count()
        if n == 0:
            return np.zeros((0, 0), dtype=np.float32)
        # Filled in place: the sample is up to 100k x D float32 (0.5 GB at 1280-d); building it
        # from a list of parts would hold it twice.
        out: np.ndarray | None = None
        pos = 0
        if n <= limit:
            for _, v in self.iter_descriptors():
                if out is None:
                    out = np.empty((n, v.shape[1]), dtype=np.float32)
                v = v[: n - pos]  # rows added since the count (another process) are left out
                out[pos : pos + len(v)] = v
                pos += len(v)
        else:
            rng = np.random.default_rng(seed)
            all_ids = np.fromiter(
                (r[0] for r in self._db.execute("SELECT id FROM images")), dtype=np.int64
            )
            chosen = np.sort(rng.choice(all_ids, size=min(limit, len(all_ids)), replace=False))
            for start in range(0, len(chosen), 500):
                chunk = [int(i) for i in chosen[start : start + 500]]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    f"SELECT descriptor FROM images WHERE id IN ({marks})", chunk
                ):
                    v = np.frombuffer(row[0], dtype=DESCRIPTOR_DTYPE)
                    if out is None:
                        out = np.empty((len(chosen), len(v)), dtype=np.float32)
                    out[pos] = v
                    pos += 1
        if out is None:
            return np.zeros((0, 0), dtype=np.float32)
        return out[:pos]

    # -- browsing and sync bookkeeping (the server's /api/images, /api/folders, /api/status) --

    def record_sync(self, roots: Sequence[str], when: float) -> None:
        """Remember the folders a sync covered (added to the ones before) and when it ended."""
        import json

        with self._transaction():
            known = self.sync_state()[0]
            merged = sorted(set(known) | {str(r) for r in roots})
            self._set_meta("roots", json.dumps(merged))
            self._set_meta("last_sync", repr(float(when)))

    def sync_state(self) -> tuple[list[str], float | None]:
        """(the folders syncs have covered, the time the last one ended or None)."""
        import json

        roots = self._get_meta("roots")
        last = self._get_meta("last_sync")
        return (json.loads(roots) if roots else []), (float(last) if last else None)

    def page(self, offset: int, limit: int, folder: str | None = None) -> list[ImageRecord]:
        """Images ordered by path, `limit` from `offset`; with `folder`, only those under it."""
        where, params = _under_folder(folder)
        rows = self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM images {where} ORDER BY path LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        ).fetchall()
        return [_record(row) for row in rows]

    def count_under(self, folder: str | None = None) -> int:
        where, params = _under_folder(folder)
        return int(self._db.execute(f"SELECT COUNT(*) FROM images {where}", params).fetchone()[0])

    def iter_paths(self) -> Iterator[str]:
        for (path,) in self._db.execute("SELECT path FROM images"):
            yield path_from_db(path)


def _translate(path: Path, exc: sqlite3.DatabaseError) -> Exception:
    """A typed error for an SQLite failure, naming the catalog and what to do."""
    from lookalike.errors import ConfigError, DiskFullError, IndexLockedError, is_disk_full

    text = str(exc)
    if is_disk_full(exc):
        return DiskFullError(path, "write the catalog")
    if "locked" in text or "busy" in text:
        return IndexLockedError(f"{path}: the catalog is locked by another process ({text})")
    if "readonly" in text or "read-only" in text:
        return ConfigError(f"{path}: the catalog cannot be written here ({text})")
    return IndexCorruptError(
        f"{path}: the catalog is damaged ({text}). Run 'lookalike check --index "
        f"{path.parent}' for details; README, 'A damaged catalog', says how to recover"
    )


def _guarded(fn: Callable) -> Callable:
    """`fn` with SQLite errors turned into lookalike's typed errors (generators too)."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(self: Catalog, *args: object, **kwargs: object) -> Iterator:
            try:
                yield from fn(self, *args, **kwargs)
            except sqlite3.IntegrityError:
                raise  # a bug in what was written, not a damaged catalog
            except sqlite3.DatabaseError as exc:
                raise _translate(self.path, exc) from exc

        return generator

    @functools.wraps(fn)
    def wrapper(self: Catalog, *args: object, **kwargs: object) -> object:
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise  # a bug in what was written, not a damaged catalog
        except sqlite3.DatabaseError as exc:
            raise _translate(self.path, exc) from exc

    return wrapper


for _name, _member in list(vars(Catalog).items()):
    if inspect.isfunction(_member) and _name not in ("__init__", "close", "__enter__", "__exit__"):
        setattr(Catalog, _name, _guarded(_member))


def _under_folder(folder: str | None) -> tuple[str, list[str]]:
    """A WHERE clause for paths below `folder`, as a range on the path index ('0' follows '/')."""
    if not folder:
        return "", []
    prefix = folder.rstrip("/\\") + "/"
    return "WHERE path >= ? AND path < ?", [prefix, prefix[:-1] + "0"]
