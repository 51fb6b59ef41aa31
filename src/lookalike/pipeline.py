"""Bulk extraction: files in, descriptors out, in the order given.

`extract_files` is the one place that decides how decoding and CNN work are overlapped; the
index's sync consumes it. Each result is either an `Extracted` (file facts + features) or the
`ImageError` explaining why the file was skipped.

How the work is laid out (see BENCHMARKS.md, "Indexing against the serial loop"):

- Decoding threads (default; `decode="threads"`) stat, hash and decode each file, applying
  EXIF orientation, `Image.draft` for big JPEGs and the resize to `max_side`, and hand back a
  uint8 array. Pillow's decoders and resizes and hashlib release the GIL, so a decoding thread
  runs on the core ONNX Runtime leaves idle, without the start-up, pickling and memory of
  worker processes (measured on 2 cores: as fast or faster, and no `if __name__ ==
  "__main__"` guard needed in scripts). `decode="processes"` decodes in worker processes
  instead (forkserver on Linux, spawn elsewhere; they import NumPy, Pillow and
  `lookalike.images`, never torch or ONNX Runtime), for machines where decoding, not the CNN,
  is the bottleneck.
- The main thread groups decoded images by exact shape (phone photos resized to a long side
  of 480 mostly share two shapes, landscape and portrait) and runs one ONNX Runtime call per
  bucket of `batch_size` images (`Extractor.describe_batch`).
- Back-pressure: at most `prefetch` files are being decoded and at most `max_pending` decoded
  images wait for the CNN; when that limit is reached the bucket holding the oldest waiting
  image is run even if not full. Memory therefore stays bounded by a few dozen decoded images,
  whatever the collection size, and results still come out in input order.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import re
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import ImageError
from lookalike.extract import Extractor, Features
from lookalike.images import image_size, load_image, to_array
from lookalike.verify.phash import hash_pair

log = logging.getLogger(__name__)

DEFAULT_BATCH = 8  # ONNX Runtime lite0 at 480x360 on 2 cores: batch 4-8 beats batch 1 by ~35 %
SMALL_JOB = 16  # fewer files than this are decoded in-process (starting workers costs ~0.3 s)
DECODERS = ("threads", "processes")


@dataclass(frozen=True, slots=True)
class Loaded:
    """A decoded image with the facts the catalog records about its file."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    image: Image.Image
    phash: tuple[int, int]  # (pHash, pHash of the mirror) of the decoded image


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a decoding worker sends back: file facts and the resized RGB pixels."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    pixels: np.ndarray  # (H, W, 3) uint8, long side <= max_side
    phash: tuple[int, int]  # (pHash, pHash of the mirror) of these pixels


@dataclass(frozen=True, slots=True)
class Extracted:
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    features: Features
    phash: tuple[int, int] | None = None  # (pHash, pHash of the mirror), same decode


def file_hash(path: str | Path) -> str:
    """Content hash of a file (BLAKE2b, 128 bits, hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found (removed during indexing?)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def _file_facts(path: str) -> tuple[int, int, str, int, int]:
    try:
        st = os.stat(path)
        content_hash = file_hash(path)
    except OSError as exc:
        raise ImageError(path, os_reason(exc)) from exc
    width, height = image_size(path)
    return st.st_size, st.st_mtime_ns, content_hash, width, height


def load_file(path: str, extractor: Extractor) -> Loaded:
    """Stat, hash and decode one file (raises ImageError)."""
    size, mtime_ns, content_hash, width, height = _file_facts(path)
    image = extractor.load(path)
    return Loaded(path, size, mtime_ns, content_hash, width, height, image, hash_pair(image))


def decode_file(path: str, max_side: int) -> Decoded:
    """Stat, hash, decode and resize one file to uint8 pixels (raises ImageError)."""
    size, mtime_ns, content_hash, width, height = _file_facts(path)
    pixels = to_array(load_image(path, max_side))
    return Decoded(path, size, mtime_ns, content_hash, width, height, pixels, hash_pair(pixels))


def _decode_task(path: str, max_side: int) -> Decoded | tuple[str, str]:
    """Worker entry point. Errors travel back as (path, reason): plain data, always picklable."""
    try:
        return decode_file(path, max_side)
    except ImageError as exc:
        return (exc.path, exc.reason)
    except Exception as exc:  # never let one odd file stop a sync
        return (path, f"cannot read image: {type(exc).__name__}: {exc}")


def _worker_init(main_pid: int) -> None:
    # Ctrl-C goes to the whole process group; the main process handles it and shuts us down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with, args=(main_pid,), name="lookalike-watch-main", daemon=True
    ).start()


def _exit_with(main_pid: int) -> None:
    """End this worker as soon as the process that started the pool is gone.

    A `kill -9` of that process gives the pool no chance to shut down, and nothing else would
    end the workers: they wait on a queue whose write end they hold themselves. The forkserver
    and the resource tracker then end on their own, because they exit once every process
    holding their pipe (the workers) has exited. The parent of a worker is the forkserver, not
    the main process, so PR_SET_PDEATHSIG would not help; the main pid is watched instead,
    through a pidfd (no pid-reuse race) or, where there is none, by polling.
    """
    try:
        fd = os.pidfd_open(main_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # a pidfd turns readable when its process exits
        os._exit(0)
    while True:
        time.sleep(0.5)
        try:
            os.kill(main_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


def extract_one(path: str, extractor: Extractor) -> Extracted:
    loaded = load_file(path, extractor)
    features = extractor.describe_image(loaded.image)
    return Extracted(
        loaded.path,
        loaded.size,
        loaded.mtime_ns,
        loaded.hash,
        loaded.width,
        loaded.height,
        features,
        loaded.phash,
    )


def default_workers() -> int:
    """Decoding threads or processes: half the cores (the CNN's threads use the rest), 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def _context() -> multiprocessing.context.BaseContext:
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        # Preload this module only (not __main__, which may be a script without a main guard).
        ctx.set_forkserver_preload(["lookalike.pipeline"])
        return ctx
    return multiprocessing.get_context("spawn")


def _main_is_importable() -> bool:
    """Whether worker processes may start. They re-import the main module (spawn/forkserver
    semantics): that fails when it is not a file (`python - < script`), and it re-runs a plain
    script that has no `if __name__ == "__main__":` guard (which would index again in every
    worker, and fail on the index's lock). Such callers decode in threads instead: the same
    results, and Pillow releases the GIL while it decodes, so decoding still overlaps the CNN."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return True
    main_path = getattr(main, "__file__", None)
    if main_path is None:
        return True  # an interactive session: nothing is re-run
    try:
        with open(main_path, encoding="utf-8", errors="replace") as fh:
            source = fh.read(1 << 20)
    except OSError:
        return False
    return _MAIN_GUARD.search(source) is not None


_MAIN_GUARD = re.compile(r"^if\s+__name__\s*==\s*['\"]__main__['\"]\s*:", re.MULTILINE)


class _Decoder:
    """Ordered, bounded decoding in worker processes, in threads (fallback), or in-process
    when `workers` is 0."""

    def __init__(
        self,
        paths: Sequence[str],
        max_side: int,
        workers: int,
        prefetch: int,
        threads: bool = True,
    ):
        self.paths = paths
        self.max_side = max_side
        self.workers = workers
        self.prefetch = max(1, prefetch)
        self._next = 0
        self._inflight: deque[tuple[str, Future]] = deque()
        self._pool: Executor | None = None
        self._use_threads = threads or not _main_is_importable()
        self._delivered = 0  # results delivered by the current pool

    def _start_pool(self) -> None:
        if self._use_threads:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lookalike-decode")
        else:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=_context(),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        self._delivered = 0

    def _submit(self, path: str) -> None:
        self._inflight.append((path, self._pool.submit(_decode_task, path, self.max_side)))

    def _fill(self) -> None:
        while self._next < len(self.paths) and len(self._inflight) < self.prefetch:
            self._submit(self.paths[self._next])
            self._next += 1

    def _restart(self, failed: str) -> tuple[str, str] | None:
        """The pool broke on `failed`. If it had worked before, a decoder crashed on that file:
        skip it and start fresh workers. If it never worked (workers cannot start, e.g. a main
        script without a main guard), decode in threads from now on and retry the file."""
        never_worked = self._delivered == 0
        retry = [p for p, _ in self._inflight]
        self._inflight.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if never_worked:
            log.warning("decoding processes failed to start; decoding in threads instead")
            self._use_threads = True
            retry.insert(0, failed)
        self._start_pool()
        for p in retry:
            self._submit(p)
        return None if never_worked else (failed, "decoder crashed on this file")

    def __iter__(self) -> Iterator[Decoded | tuple[str, str]]:
        if self.workers <= 0:
            for path in self.paths:
                yield _decode_task(path, self.max_side)
            return
        self._start_pool()
        try:
            self._fill()
            while self._inflight:
                path, fut = self._inflight[0]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    self._inflight.popleft()
                    crashed = self._restart(path)
                    if crashed is not None:
                        yield crashed
                    continue
                self._inflight.popleft()
                self._delivered += 1
                self._fill()
                yield result
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def extract_files(
    paths: Sequence[str],
    extractor: Extractor,
    *,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    prefetch: int | None = None,
    max_pending: int | None = None,
    decode: str = "threads",
) -> Iterator[Extracted | ImageError]:
    """Yield one result per path, in order.

    `workers` decoding threads, or processes with `decode="processes"` (default:
    `default_workers()`; 0 decodes in the calling thread, as do jobs of fewer than 16 files),
    run ahead of the CNN by at most `prefetch` files; decoded images are grouped by shape and
    described `batch_size` at a time; at most `max_pending` decoded images wait for the CNN.
    """
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
    paths = list(paths)
    batch_size = max(1, int(batch_size))
    if workers is None:
        workers = default_workers() if len(paths) >= SMALL_JOB else 0
    prefetch = prefetch if prefetch is not None else 2 * batch_size + 2 * max(workers, 1)
    max_pending = max(batch_size, max_pending if max_pending is not None else 4 * batch_size)

    # slots[i] holds path i's result once known; `waiting` maps a shape to the slot numbers of
    # decoded images of that shape not yet described.
    slots: dict[int, Extracted | ImageError | Decoded] = {}
    waiting: dict[tuple[int, ...], list[int]] = {}
    pending = 0
    head = 0  # next slot to yield

    def run_bucket(shape: tuple[int, ...]) -> None:
        nonlocal pending
        members = waiting.pop(shape)
        pending -= len(members)
        items: list[Decoded] = [slots[i] for i in members]  # type: ignore[misc]
        for i, result in zip(members, _describe(items, extractor), strict=True):
            slots[i] = result

    decoder = _Decoder(paths, extractor.max_side, workers, prefetch, threads=decode == "threads")
    for n, item in enumerate(decoder):
        if isinstance(item, Decoded):
            slots[n] = item
            shape = item.pixels.shape
            waiting.setdefault(shape, []).append(n)
            pending += 1
            if len(waiting[shape]) >= batch_size:
                run_bucket(shape)
        else:
            slots[n] = ImageError(*item)
        # Bound the waiting room: run the bucket of the oldest waiting image (the head: all
        # earlier results have been yielded, and results arrive in input order).
        while pending >= max_pending:
            run_bucket(slots[head].pixels.shape)  # type: ignore[union-attr]
        while head in slots and not isinstance(slots[head], Decoded):
            yield slots.pop(head)  # type: ignore[misc]
            head += 1
    while waiting:
        run_bucket(slots[head].pixels.shape)  # type: ignore[union-attr]
        while head in slots and not isinstance(slots[head], Decoded):
            yield slots.pop(head)  # type: ignore[misc]
            head += 1
    while head in slots:
        yield slots.pop(head)  # type: ignore[misc]
        head += 1


def _describe(items: list[Decoded], extractor: Extractor) -> list[Extracted | ImageError]:
    """Describe one same-shape bucket; if the batch fails, retry one by one so that a single
    image the CNN cannot take is skipped alone."""
    try:
        features = extractor.describe_batch([d.pixels for d in items])
    except (RuntimeError, ValueError, MemoryError) as exc:
        if len(items) > 1:
            return [r for d in items for r in _describe([d], extractor)]
        reason = f"cannot compute descriptor: {type(exc).__name__}: {exc}"
        return [ImageError(items[0].path, reason)]
    return [
        Extracted(d.path, d.size, d.mtime_ns, d.hash, d.width, d.height, f, d.phash)
        for d, f in zip(items, features, strict=True)
    ]
