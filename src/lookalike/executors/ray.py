"""Extraction on a Ray cluster: actors that each load the model once and describe shards.

How it works:

- Each worker is a Ray actor holding one `Extractor` (the ONNX model loads once per actor) and
  reserving `threads` CPUs; by default there are as many actors as the cluster has CPUs for.
- The file list is cut into shards of `shard_size` paths. An actor describes a shard with
  `lookalike.pipeline.extract_files` - the same decoding, batching and per-file error handling
  as a local run - and returns plain data (`Extracted`, or (path, reason) for a skipped file).
- The driver hands each actor at most `depth` shards at a time, keeps results of at most
  `window` shards ahead of the one it is waiting for (memory stays bounded), and yields results
  in input order to the single writer (the index's sync).
- A worker that dies (a decoder crash, a lost node) is replaced; its shard is retried one file
  at a time, and a file that kills a worker on its own is skipped with that reason.

Workers open the paths the driver gives them, so every node must see the files under the same
path (a shared filesystem: NFS, CephFS, a cloud bucket mounted with the same path everywhere).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from lookalike.errors import ConfigError, ExecutorError, ImageError, IndexMismatchError
from lookalike.extract import Extractor
from lookalike.pipeline import Extracted

log = logging.getLogger(__name__)

DEFAULT_SHARD = 32
DEFAULT_DEPTH = 2  # shards queued on an actor: the next one is ready when one finishes
START_TIMEOUT = 300  # seconds for the workers to be placed and load the model
CRASH_REASON = "extraction worker crashed on this file"
# A local instance needs little shared memory: only descriptors travel through it.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


class ExtractionWorker:
    """The body of one Ray actor (wrapped with `ray.remote` when the executor starts)."""

    def __init__(self, settings: dict, threads: int | None) -> None:
        trained = None
        if settings.get("model_dir"):  # a model from `lookalike train`
            from lookalike.training.model_dir import load_trained_model

            trained = load_trained_model(settings["model_dir"])
            if trained.hash != settings.get("model_hash"):
                raise IndexMismatchError(f"{trained.path}: the model changed on this worker")
        self.extractor = Extractor(
            settings["model"],
            settings["descriptor"],
            settings["max_side"],
            settings["scales"],
            runtime=settings["runtime"],
            threads=threads,
            trained=trained,
            precision=settings.get("precision", "fp32"),
        )
        _ = self.extractor.backbone  # load now: a model that cannot load fails at start

    def run(self, paths: list[str], batch_size: int) -> list[Extracted | tuple[str, str]]:
        from lookalike.pipeline import extract_files

        out: list[Extracted | tuple[str, str]] = []
        # workers=0: decode in this process; parallelism comes from the actors
        for item in extract_files(paths, self.extractor, workers=0, batch_size=batch_size):
            out.append((item.path, item.reason) if isinstance(item, ImageError) else item)
        return out

    def ping(self) -> tuple[str, int]:
        """(host name, process id): where this worker runs."""
        import os
        import socket

        return socket.gethostname(), os.getpid()


@dataclass(slots=True)
class _Job:
    shard: int  # shard number
    offset: int  # first path's position in the shard
    paths: list[str]
    retry: bool = False  # one file of a shard whose worker died


class RayExecutor:
    """Runs extraction on Ray: a local instance when `address` is None, else the cluster at
    `address` (anything `ray.init(address=...)` takes: "auto", "ray://head:10001", ...).
    An already initialized Ray (`ray.init` called by the program) is used as it is.

    `workers` actors (default: one per `threads` CPUs of the cluster) each run ONNX Runtime
    with `threads` intra-op threads. Use as a context manager or call `close()`.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        threads: int = 1,
        shard_size: int = DEFAULT_SHARD,
        batch_size: int | None = None,
        depth: int = DEFAULT_DEPTH,
        num_cpus: int | None = None,
    ) -> None:
        if threads < 1 or shard_size < 1 or depth < 1 or (workers is not None and workers < 1):
            raise ConfigError("ray executor: workers, threads, shard_size and depth must be >= 1")
        self.address = address
        self.workers = workers
        self.threads = int(threads)
        self.shard_size = int(shard_size)
        self.batch_size = batch_size
        self.depth = int(depth)
        self.num_cpus = num_cpus
        self._started_ray = False
        self._actors: list = []
        self._actor_key: tuple | None = None
        self._remote_cls = None
        self.worker_hosts: list[tuple[str, int]] = []  # (host, pid) of each worker at start

    # -- lifecycle ---------------------------------------------------------------------------

    def _connect(self):
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the ray executor needs Ray: pip install 'lookalike[scale]'") from exc
        if not ray.is_initialized():
            options = {"logging_level": logging.WARNING, "log_to_driver": False}
            try:
                if self.address:
                    ray.init(address=self.address, **options)
                else:
                    ray.init(
                        num_cpus=self.num_cpus,
                        include_dashboard=False,
                        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                        **options,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local instance"
                raise ExecutorError(f"cannot start Ray ({where}): {exc}") from exc
            self._started_ray = True
        return ray

    def close(self) -> None:
        """Stop the actors; shut Ray down if this executor started it."""
        if not self._actors and not self._started_ray:
            return
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone
                pass
        self._actors = []
        self._actor_key = None
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- actors ------------------------------------------------------------------------------

    def _worker_count(self, ray) -> int:
        if self.workers is not None:
            return self.workers
        free = int(ray.available_resources().get("CPU", 0))
        if free < self.threads:
            raise ExecutorError(
                f"the Ray cluster has {free} free CPU(s); a worker needs {self.threads}"
            )
        return free // self.threads

    def _new_actor(self, ray, settings: dict):
        if self._remote_cls is None:
            self._remote_cls = ray.remote(ExtractionWorker)
        return self._remote_cls.options(num_cpus=self.threads, max_restarts=0).remote(
            settings, self.threads
        )

    def _ensure_actors(self, ray, extractor: Extractor) -> dict:
        settings = {
            "model": extractor.model,
            "descriptor": extractor.descriptor,
            "max_side": extractor.max_side,
            "scales": list(extractor.scales),
            "runtime": extractor.runtime,
            "precision": extractor.precision,
            "model_dir": str(extractor.trained.path) if extractor.trained else None,
            "model_hash": extractor.trained.hash if extractor.trained else None,
        }
        key = tuple(sorted((k, str(v)) for k, v in settings.items()))
        if self._actor_key != key:
            for actor in self._actors:
                ray.kill(actor)
            count = self._worker_count(ray)
            self._actors = [self._new_actor(ray, settings) for _ in range(count)]
            try:  # surface a model that cannot load (or a node without lookalike) right away
                hosts = ray.get([a.ping.remote() for a in self._actors], timeout=START_TIMEOUT)
            except ray.exceptions.GetTimeoutError as exc:
                self.close()
                raise ExecutorError(
                    f"{count} ray workers did not start within {START_TIMEOUT} s "
                    "(not enough free CPUs in the cluster, or the model is slow to load)"
                ) from exc
            except ray.exceptions.RayError as exc:
                self.close()
                raise ExecutorError(f"ray workers failed to start: {_first_line(exc)}") from exc
            self._actor_key = key
            self.worker_hosts = hosts
            log.info("ray: %d extraction workers on %d node(s)", count, len({h for h, _ in hosts}))
        return settings

    # -- extraction --------------------------------------------------------------------------

    def prepare(self, extractor: Extractor) -> None:
        """Connect to (or start) Ray and start the workers; each loads the model."""
        self._ensure_actors(self._connect(), extractor)

    def extract(
        self, paths: Sequence[str], extractor: Extractor
    ) -> Iterator[Extracted | ImageError]:
        """One result per path, in input order (a generator: work starts on first `next`)."""
        paths = list(paths)
        if not paths:
            return iter(())
        return self._run(paths, extractor)

    def _run(self, paths: list[str], extractor: Extractor) -> Iterator[Extracted | ImageError]:
        ray = self._connect()
        settings = self._ensure_actors(ray, extractor)
        from lookalike.pipeline import DEFAULT_BATCH

        batch_size = self.batch_size or DEFAULT_BATCH
        size = self.shard_size
        shards = [paths[i : i + size] for i in range(0, len(paths), size)]
        results: list[list | None] = [None] * len(shards)
        missing = [len(s) for s in shards]
        queue: deque[_Job] = deque(_Job(n, 0, s) for n, s in enumerate(shards))
        load = [0] * len(self._actors)  # jobs in flight per actor
        pending: dict = {}  # ObjectRef -> (actor number, job)
        window = 2 * self.depth * len(self._actors)
        head = 0
        try:
            while head < len(shards):
                # feed idle actors; new shards only within the window ahead of `head`
                while queue and (queue[0].retry or queue[0].shard < head + window):
                    free = min(range(len(load)), key=load.__getitem__)
                    if load[free] >= self.depth:
                        break
                    job = queue.popleft()
                    actor = self._actors[free]
                    pending[ref := actor.run.remote(job.paths, batch_size)] = (free, actor, job)
                    load[free] += 1
                if missing[head] == 0:
                    for item in results[head]:
                        yield (ImageError(item[0], item[1]) if isinstance(item, tuple) else item)
                    results[head] = None
                    head += 1
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    number, actor, job = pending.pop(ref)
                    load[number] -= 1
                    try:
                        out = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                        out = self._on_crash(ray, settings, number, actor, job, queue)
                        if out is None:
                            continue  # split into single-file jobs, queued first
                    except ray.exceptions.RayTaskError as exc:
                        raise ExecutorError(
                            f"ray worker failed on {job.paths[0]} ...: {_first_line(exc)}"
                        ) from exc
                    if results[job.shard] is None:
                        results[job.shard] = [None] * len(shards[job.shard])
                    results[job.shard][job.offset : job.offset + len(out)] = out
                    missing[job.shard] -= len(out)
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)

    def _on_crash(self, ray, settings: dict, number: int, actor, job: _Job, queue: deque):
        """A worker died with `job` running or queued on it: replace it (once: its other jobs
        fail too); retry the job's files one at a time, or, for a single file, report it
        skipped."""
        if self._actors[number] is actor:
            log.warning("ray worker died on a shard starting at %s; replacing it", job.paths[0])
            try:
                ray.kill(actor)
            except Exception:
                pass
            self._actors[number] = self._new_actor(ray, settings)
        if len(job.paths) == 1:
            return [(job.paths[0], CRASH_REASON)]
        for i in reversed(range(len(job.paths))):
            queue.appendleft(_Job(job.shard, job.offset + i, [job.paths[i]], retry=True))
        return None


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
