"""What the routes share, one per app: the open index, the settings, the CNN gate, the
thumbnail cache, the uploads folder and the per-file write locks. The app factory builds it in
its lifespan; the routes read it through the `State` dependency. Neither imports the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from lookalike.server.limits import CnnGate
from lookalike.server.settings import ServerSettings
from lookalike.server.thumbnails import ThumbnailCache

if TYPE_CHECKING:
    from lookalike.engine import Index


class KeyedLocks:
    """One asyncio lock per key (an uploads-folder path), created on demand and dropped when
    nobody holds or waits for it. Uploads and deletes of the same file take the same lock, so
    an upload racing a delete of the same content, or two identical uploads, run one after
    the other."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class ServerState:
    """What the routes share: one per app."""

    index: Index
    settings: ServerSettings
    gate: CnnGate
    thumbnails: ThumbnailCache
    uploads_dir: Path
    write_locks: KeyedLocks = field(default_factory=KeyedLocks)
    started: float = field(default_factory=time.time)


def get_state(request: Request) -> ServerState:
    return request.app.state.lookalike


State = Annotated[ServerState, Depends(get_state)]
