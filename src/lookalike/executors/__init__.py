"""Where extraction runs: in this process (`local`, the default) or on a Ray cluster (`ray`).

An executor turns a list of image paths into one result per path, in the order given: an
`Extracted` (file facts + features) or the `ImageError` saying why the file was skipped. The
index's sync consumes that stream and stays the single writer, so incremental sync, skipped-file
reasons and crash safety do not depend on where the CNN ran.

    idx.sync(["/mnt/photos"], executor="ray")                  # a local Ray instance
    idx.sync(["/mnt/photos"], executor="ray:ray://head:10001")   # an existing cluster
    with RayExecutor(address="auto") as ex:                      # reuse one across syncs
        idx.sync(["/mnt/photos"], executor=ex)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from lookalike.errors import ConfigError, ImageError
from lookalike.extract import Extractor
from lookalike.pipeline import Extracted

EXECUTORS = ("local", "ray")


@runtime_checkable
class Executor(Protocol):
    """Runs extraction for a list of paths; results come back in input order."""

    name: str

    def prepare(self, extractor: Extractor) -> None:
        """Load the model (start the workers) now rather than on the first result."""
        ...

    def extract(
        self, paths: Sequence[str], extractor: Extractor
    ) -> Iterator[Extracted | ImageError]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """This machine: decoding processes + ONNX Runtime (lookalike.pipeline.extract_files)."""

    name = "local"

    def prepare(self, extractor: Extractor) -> None:
        _ = extractor.backbone

    def extract(
        self, paths: Sequence[str], extractor: Extractor
    ) -> Iterator[Extracted | ImageError]:
        from lookalike.pipeline import extract_files

        return extract_files(paths, extractor)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_executor(spec: str | None) -> Executor:
    """`None` or "local" -> LocalExecutor; "ray" -> a local Ray instance; "ray:ADDRESS" -> the
    Ray cluster at ADDRESS ("auto", "ray://head:10001", "10.0.0.5:6379")."""
    if spec is None or spec.strip() in ("", "local"):
        return LocalExecutor()
    name, _, address = spec.strip().partition(":")
    if name == "ray":
        from lookalike.executors.ray import RayExecutor

        return RayExecutor(address=address.strip() or None)
    raise ConfigError(
        f"unknown executor {spec!r}: expected 'local', 'ray' or 'ray:ADDRESS' "
        "(e.g. 'ray:auto', 'ray:ray://head:10001')"
    )


def resolve_executor(executor: str | Executor | None) -> tuple[Executor, bool]:
    """(executor, owned): an executor built here from a spec is closed by the caller."""
    if executor is None or isinstance(executor, str):
        return parse_executor(executor), True
    if isinstance(executor, Executor):
        return executor, False
    raise ConfigError(f"executor must be a spec string or an Executor, got {type(executor)!r}")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "parse_executor", "resolve_executor"]
