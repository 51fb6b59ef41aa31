"""Schemathesis against the app's own OpenAPI schema, over real HTTP (uvicorn on a free port):
every operation gets generated requests, valid and not; no answer may be a 500, and every answer
must be one the schema documents (status code, content type, body shape). Run twice: read-only,
and writable with a token. Examples are bounded so the whole file takes about a minute."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings
from lookalike.samples import sample_photos
from lookalike.server import ServerSettings, create_app

log = logging.getLogger(__name__)
TOKEN = "schema-test-token-0123456789"
EXAMPLES = 10  # per operation and mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving the app in a thread of this process."""

    def __init__(self, index: Path, server_settings: ServerSettings) -> None:
        import uvicorn

        self.port = _free_port()
        config = uvicorn.Config(
            create_app(index, server_settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{self.port}"
        # The first text search that WordNet cannot answer loads the sentence model (seconds
        # to a minute): do it once here, so that generated cases are not timed against it.
        httpx.get(f"{url}/api/search/text", params={"q": "xqzv blorf"}, timeout=600)
        return url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def schema_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schema")
    photos = root / "photos"
    photos.mkdir()
    for name, image in sample_photos(["chelsea", "coffee", "rocket"]).items():
        image.thumbnail((200, 200))
        image.save(photos / f"{name}.jpg", quality=85)
    with Index.create(root / "index", IndexSettings(max_side=224)) as idx:
        idx.sync([photos])
    return root / "index"


@pytest.fixture(scope="module")
def read_only_schema(schema_index: Path):
    with LiveServer(schema_index, ServerSettings(cnn_queue=64)) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


@pytest.fixture(scope="module")
def writable_schema(schema_index: Path, tmp_path_factory: pytest.TempPathFactory):
    copy = tmp_path_factory.mktemp("schema-writable") / "index"
    shutil.copytree(schema_index, copy)
    server_settings = ServerSettings(writable=True, token=TOKEN, cnn_queue=64)
    with LiveServer(copy, server_settings) as url:
        yield schemathesis.openapi.from_url(
            f"{url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
        )


BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def run_schema(schema, headers: dict | None = None) -> list[str]:
    """Every operation, positive and negative cases: returns the failures (one line each)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @BOUNDED
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:
                case.call_and_validate(checks=CHECKS, headers=headers, timeout=300)

            started = time.perf_counter()
            try:
                check()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except Exception as exc:  # noqa: BLE001 - collected, reported together below
                first = str(exc).strip().splitlines()
                failures.append(f"{operation.label} [{mode}]: {' | '.join(first[:12])}")
            finally:
                log.info("%s [%s]: %.1f s", operation.label, mode, time.perf_counter() - started)
    return failures


def test_read_only_server_answers_only_what_its_schema_documents(read_only_schema) -> None:
    failures = run_schema(read_only_schema)
    assert not failures, "\n\n".join(failures)


def test_writable_server_with_a_token_answers_only_what_its_schema_documents(
    writable_schema,
) -> None:
    failures = run_schema(writable_schema, {"Authorization": f"Bearer {TOKEN}"})
    assert not failures, "\n\n".join(failures)
