"""Bounds on the work one server takes on: CNN concurrency with a bounded wait queue (503 +
Retry-After past it), and a cap on request body size enforced while the body streams in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from lookalike.server.problems import ApiError

T = TypeVar("T")


class CnnGate:
    """Runs CPU-bound CNN work in worker threads, at most `workers` at a time, with at most
    `queue` more waiting. A request past that is refused at once with 503 (no unbounded
    queueing): clients retry after `retry_after_s`."""

    def __init__(self, workers: int, queue: int, retry_after_s: int) -> None:
        self.workers = workers
        self.queue = queue
        self.retry_after_s = retry_after_s
        self._limiter = anyio.CapacityLimiter(workers)
        self.in_flight = 0
        self.rejected = 0
        self.done = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.in_flight >= self.workers + self.queue:
            self.rejected += 1
            raise ApiError(
                503,
                "the server is busy with other image searches; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.in_flight += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self.in_flight -= 1
            self.done += 1

    def stats(self) -> dict:
        return {
            "workers": self.workers,
            "queue": self.queue,
            "in_flight": self.in_flight,
            "completed": self.done,
            "rejected_busy": self.rejected,
        }


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Pure ASGI middleware: answers 413 when a request body is larger than `limit` bytes,
    from Content-Length when given and while streaming otherwise, before it is all read."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await _send_413(send, self.limit)
                    return
        seen = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception as exc:
            # Middleware in between may wrap it in an ExceptionGroup.
            if started or not _is_too_large(exc):
                raise
            await _send_413(send, self.limit)


def _is_too_large(exc: BaseException) -> bool:
    if isinstance(exc, _BodyTooLarge):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_too_large(e) for e in exc.exceptions)
    return False


async def _send_413(send: Callable, limit: int) -> None:
    import json

    body = json.dumps(
        {"status": 413, "message": f"request body too large (limit {limit:,} bytes)"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
