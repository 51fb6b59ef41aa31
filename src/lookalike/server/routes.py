"""The /api routes. They parse, call the engine (CNN work through the gate, other blocking work
in the thread pool) and shape JSON; the logic lives in lookalike.engine."""

from __future__ import annotations

import json
import math
import mimetypes
import secrets
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from lookalike.engine import Hit
from lookalike.errors import ConfigError, ImageError
from lookalike.images import decode_image
from lookalike.index.catalog import ImageRecord
from lookalike.server.files import (
    allowed_folders,
    checked_path,
    display_path,
    iter_fd,
    open_indexed,
)
from lookalike.server.models import (
    MAX_ID,
    Box,
    Health,
    ImageInfo,
    Removed,
    SearchById,
    SearchByText,
    SearchResult,
    Stats,
    errors,
)
from lookalike.server.problems import ApiError
from lookalike.server.state import ServerState, State
from lookalike.server.thumbnails import DEFAULT_SIZE, SIZES
from lookalike.server.uploads import incoming_dir, keep, receive_upload, upload_target

router = APIRouter(prefix="/api")

ImageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="an indexed image's id")]

# A JSON search body is a few numbers and at most a 200-character text: bound it before
# parsing, in bytes and in nesting depth (a deeply nested body would exhaust the parser).
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16

SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "k": {"type": "integer", "minimum": 1},
                        "box": {
                            "type": "string",
                            "description": "x0,y0,x1,y1 in the uploaded image's pixels",
                        },
                        "localize": {"type": "boolean"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "oneOf": [SearchById.model_json_schema(), SearchByText.model_json_schema()]
                }
            },
        },
    }
}


SEARCH_OK: dict[int | str, dict] = {200: {"model": SearchResult, "description": "The hits."}}


# -- helpers ----------------------------------------------------------------------------------


def _k(state: ServerState, k: int | None) -> int:
    s = state.settings
    if k is None:
        return s.default_k
    if not 1 <= k <= s.max_k:
        raise ApiError(422, f"k: must be between 1 and {s.max_k}, got {k}")
    return k


def _record(state: ServerState, image_id: int) -> ImageRecord:
    record = state.index.get(image_id)
    if record is None:
        raise ApiError(404, f"no image with id {image_id} in the index")
    return record


def _folders(state: ServerState, record: ImageRecord) -> list[str]:
    with state.index.lock:
        roots, _ = state.index.catalog.sync_state()
    return allowed_folders(roots, state.uploads_dir, record.path)


def _urls(image_id: int) -> dict:
    return {
        "thumbnail": f"/api/images/{image_id}/thumbnail",
        "file": f"/api/images/{image_id}/file",
    }


def _record_json(record: ImageRecord) -> dict:
    return {
        "id": record.id,
        "path": display_path(record.path),
        "width": record.width,
        "height": record.height,
        "size": record.size,
        "hash": record.hash,
        "added_at": record.added_at,
        **_urls(record.id),
    }


def _hits_json(state: ServerState, hits: list[Hit], started: float, query: dict) -> dict:
    out = []
    for hit in hits:
        record = state.index.get(hit.id)
        item = hit.to_dict()
        item["path"] = display_path(item["path"])
        if record is not None:
            item["width"], item["height"] = record.width, record.height
        item.update(_urls(hit.id))
        out.append(item)
    return {"query": query, "hits": out, "ms": round(1000 * (time.perf_counter() - started), 1)}


def _parse_box(text: str | None) -> Box | None:
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    try:
        values = json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",")]
        box = tuple(float(v) for v in values)
    except (ValueError, TypeError, RecursionError):
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ApiError(422, f"box: expected four finite numbers x0,y0,x1,y1, got {text[:80]!r}")
    return box  # type: ignore[return-value]


def _parse_int(name: str, text: object) -> int | None:
    if text is None or text == "":
        return None
    value = str(text).strip()
    if not value.isascii() or not value.lstrip("-").isdigit() or len(value) > 20:
        raise ApiError(422, f"{name}: expected an integer, got {str(text)[:40]!r}")
    return int(value)


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def json_depth_ok(raw: bytes, limit: int) -> bool:
    """Whether no array/object in a JSON text nests deeper than `limit` (strings skipped)."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json_body(raw: bytes) -> object:
    """Strict JSON: bounded size and depth, no NaN/Infinity. Raises ApiError 413/422."""
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, f"JSON body too large (limit {MAX_JSON_BYTES:,} bytes)")
    if not json_depth_ok(raw, MAX_JSON_DEPTH):
        raise ApiError(422, f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(422, f"invalid JSON body ({str(exc)[:120]})") from None


def require_write(request: Request, state: State) -> None:
    """Writes need --writable, and the bearer token when one is configured."""
    if not state.settings.writable:
        raise ApiError(403, "writes are disabled (start the server with --writable)")
    token = state.settings.token
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise ApiError(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )


# -- search -----------------------------------------------------------------------------------


@router.post(
    "/search",
    openapi_extra=SEARCH_BODY,
    response_model=None,  # documented below; the answer's optional keys stay absent, not null
    responses=SEARCH_OK | errors(400, 404, 413, 415, 422, 503),
)
async def search(request: Request, state: State) -> dict:
    """Search by an uploaded image (multipart field `image`, optional `k`, optional `box`
    "x0,y0,x1,y1"), by an indexed image (JSON `{"id": N, "k": K, "box": [...]}`) or by words
    (JSON `{"text": "a cup of coffee", "k": K}`; hits carry `tags`).
    Returns `{"hits": [{"id", "path", "score", "box"?, "width", "height", ...}]}`."""
    started = time.perf_counter()
    kind = media_type(request)
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        file = form.get("image")
        if not hasattr(file, "read") or not hasattr(file, "filename"):
            raise ApiError(422, "image: a file in multipart field 'image' is required")
        k = _k(state, _parse_int("k", form.get("k")))
        box = _parse_box(form.get("box"))  # type: ignore[arg-type]
        localize = str(form.get("localize", "")).lower() in ("1", "true", "on", "yes")
        upload = await receive_upload(
            file,  # type: ignore[arg-type]
            max_bytes=state.settings.max_upload_bytes,
            max_pixels=state.settings.max_pixels,
        )
        try:
            hits = await state.gate.run(_search_upload, state, upload.path, k, box, localize)
        finally:
            upload.discard()
        query = {"upload": upload.filename, "width": upload.width, "height": upload.height}
        if box:
            query["box"] = list(box)
        return _hits_json(state, hits, started, query)
    if kind == "application/json":
        data = parse_json_body(await request.body())
        if isinstance(data, dict) and "text" in data:
            try:
                by_text = SearchByText.model_validate(data)
            except ValidationError as exc:
                raise ApiError(422, _validation_message(exc)) from None
            return await _text_search(state, by_text.text, by_text.k, started)
        try:
            body = SearchById.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, _validation_message(exc)) from None
        k = _k(state, body.k)
        record = _record(state, body.id)
        query: dict = {"id": body.id}
        if body.box is None and not body.localize:
            hits = await run_in_threadpool(state.index.search_id, body.id, k)
        elif body.box is None:  # localizing runs the CNN on the hits
            hits = await state.gate.run(_search_id_localized, state, body.id, k)
        else:
            query["box"] = list(body.box)
            folders = await run_in_threadpool(_folders, state, record)
            hits = await state.gate.run(
                _search_record_box, state, record, folders, k, body.box, body.localize
            )
        return _hits_json(state, hits, started, query)
    raise ApiError(
        415,
        'send multipart/form-data with an image file in field \'image\', or JSON {"id": N, "k": K}',
    )


def _validation_message(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
    return "; ".join(parts)


async def _text_search(state: ServerState, text: str, k: int | None, started: float) -> dict:
    text = text.strip()
    if not text:
        raise ApiError(422, "text: must not be empty")
    k = _k(state, k)
    # The sentence model is CPU work like the CNN: it goes through the same gate.
    try:
        hits = await state.gate.run(state.index.search_text, text, k)
    except ConfigError as exc:  # e.g. only stop words ("the photo")
        raise ApiError(422, f"text: {exc}") from None
    from lookalike.server.explain import explain_text

    out = _hits_json(state, hits, started, {"text": text})
    out.update(await state.gate.run(explain_text, state.index, text, hits))  # matched, reason
    return out


@router.get(
    "/search/text",
    response_model=None,  # documented below; the answer's optional keys stay absent, not null
    responses=SEARCH_OK | errors(422, 503),
)
async def search_text(
    state: State,
    q: Annotated[str, Query(description="the words, e.g. 'a cup of coffee'", max_length=200)],
    k: Annotated[int | None, Query(ge=1)] = None,
) -> dict:
    """Search by words: `?q=a cup of coffee&k=K`. Same answer as POST /api/search with
    `{"text": ...}`: `{"hits": [{"id", "path", "score", "tags": [...]}]}`, each tag
    `{"class_id", "name", "prob"}`."""
    return await _text_search(state, q, k, time.perf_counter())


def _search_upload(
    state: ServerState, path: Path, k: int, box: Box | None, localize: bool
) -> list[Hit]:
    # With a box, decode at full size so the box is in the uploaded image's own pixels.
    max_side = None if box is not None else state.index.settings.max_side
    try:
        image = decode_image(path, max_side, max_pixels=state.settings.max_pixels)
    except ImageError as exc:
        raise ImageError("upload", exc.reason) from None
    return state.index.search(image, k, box=box, localize=localize)


def _search_id_localized(state: ServerState, image_id: int, k: int) -> list[Hit]:
    return state.index.search_id(image_id, k, localize=True)


def _search_record_box(
    state: ServerState, record: ImageRecord, folders: list[str], k: int, box: Box, localize: bool
) -> list[Hit]:
    with checked_path(record, folders) as path:
        try:
            image = decode_image(path, None, max_pixels=state.settings.max_pixels)
        except ImageError as exc:
            raise ApiError(409, f"image {record.id}: {exc.reason}; run 'lookalike index'") from None
    raw = state.index.describe(image, box=box)  # ConfigError (400) for an empty box
    return state.index.search_vector(raw, k, exclude=[record.id], localize=localize)


# -- images -----------------------------------------------------------------------------------


@router.get("/images/{image_id}", response_model=ImageInfo, responses=errors(404, 422))
async def image_info(image_id: ImageId, state: State) -> dict:
    """What the index knows about an image."""
    return _record_json(_record(state, image_id))


@router.get(
    "/images/{image_id}/similar",
    response_model=None,  # documented below; the answer's optional keys stay absent, not null
    responses=SEARCH_OK | errors(404, 422),
)
async def similar(
    image_id: ImageId,
    state: State,
    k: Annotated[int | None, Query(ge=1)] = None,
) -> dict:
    """The images that look like an indexed one (itself left out)."""
    started = time.perf_counter()
    k = _k(state, k)
    _record(state, image_id)
    hits = await run_in_threadpool(state.index.search_id, image_id, k)
    return _hits_json(state, hits, started, {"id": image_id})


@router.get(
    "/images/{image_id}/thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **errors(403, 404, 409, 422)},
)
async def thumbnail(
    image_id: ImageId,
    state: State,
    size: Annotated[int, Query(description=f"longer side, one of {SIZES}")] = DEFAULT_SIZE,
) -> FileResponse:
    """A JPEG thumbnail (cached on disk). Served under the same policy as the file."""
    if size not in SIZES:
        raise ApiError(422, f"size: must be one of {', '.join(map(str, SIZES))}, got {size}")
    record = _record(state, image_id)
    path = await run_in_threadpool(_thumbnail, state, record, size)
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"}
    )


def _thumbnail(state: ServerState, record: ImageRecord, size: int) -> Path:
    with checked_path(record, _folders(state, record)) as path:
        try:
            return state.thumbnails.get(record.id, path, record.hash, size)
        except ImageError as exc:
            raise ApiError(409, f"image {record.id}: {exc.reason}; run 'lookalike index'") from None


@router.get(
    "/images/{image_id}/file",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/*": {}}}, **errors(403, 404, 409, 422)},
)
async def original(image_id: ImageId, state: State) -> StreamingResponse:
    """The indexed original file, by id (the only way files are served: never by path), when
    it is still the file that was indexed and lies inside the indexed folders (README,
    "Security")."""
    record = _record(state, image_id)
    folders = await run_in_threadpool(_folders, state, record)
    fd, st = await run_in_threadpool(open_indexed, record, folders)
    kind = mimetypes.guess_type(record.path)[0] or "application/octet-stream"
    return StreamingResponse(
        iter_fd(fd),
        media_type=kind,
        headers={
            "Content-Length": str(st.st_size),
            "Content-Disposition": "inline",
            "Cache-Control": "private, max-age=60",
        },
    )


@router.post(
    "/images",
    status_code=201,
    dependencies=[Depends(require_write)],
    response_model=ImageInfo,
    responses={200: {"model": ImageInfo, "description": "Already indexed: that record."}}
    | errors(401, 403, 409, 413, 415, 422, 503, 507),
)
async def add_image(image: UploadFile, state: State, response: Response) -> dict:
    """Add an uploaded image to the index (kept in `<index>/uploads/` under a content-hash
    name). Answers 201 once the image is searchable and its file servable, or 200 with the
    existing record when the same content was uploaded before (one id per content)."""
    upload = await receive_upload(
        image,
        max_bytes=state.settings.max_upload_bytes,
        max_pixels=state.settings.max_pixels,
        tmp_dir=incoming_dir(state.uploads_dir),
    )
    target = upload_target(upload, state.uploads_dir)
    # One upload or delete of a given file at a time: identical uploads get one id, and an
    # upload never races a delete that would unlink its file after the 201.
    async with state.write_locks.hold(str(target)):
        existing = await run_in_threadpool(state.index.catalog.find_path, str(target))
        if existing is not None and target.is_file():
            upload.discard()
            response.status_code = 200
            return _record_json(existing)
        await run_in_threadpool(keep, upload, state.uploads_dir)
        try:
            image_id = await state.gate.run(state.index.add_image, target)
        except ImageError as exc:
            target.unlink(missing_ok=True)
            raise ImageError("upload", exc.reason) from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return _record_json(_record(state, image_id))


@router.delete(
    "/images/{image_id}",
    dependencies=[Depends(require_write)],
    response_model=Removed,
    responses=errors(401, 403, 404, 409, 422),
)
async def delete_image(image_id: ImageId, state: State) -> dict:
    """Remove an image from the index. A file the server uploaded itself is deleted too;
    other files are left where they are."""
    record = _record(state, image_id)
    async with state.write_locks.hold(record.path):
        if state.index.get(image_id) is None:  # deleted while this request waited
            raise ApiError(404, f"no image with id {image_id} in the index")
        await run_in_threadpool(state.index.remove, [image_id])
        path = Path(record.path)
        deleted_file = False
        if path.parent == state.uploads_dir:
            path.unlink(missing_ok=True)
            deleted_file = True
        state.thumbnails.drop(image_id)
    return {"removed": image_id, "path": display_path(record.path), "file_deleted": deleted_file}


# -- service ----------------------------------------------------------------------------------


@router.get("/health", response_model=Health)
async def health(state: State) -> dict:
    count = await run_in_threadpool(len, state.index)
    return {"status": "ok", "images": count, "writable": state.index.writable}


@router.get("/stats", response_model=Stats)
async def stats(state: State) -> dict:
    info = await run_in_threadpool(state.index.info)
    info["path"] = display_path(info["path"])
    s = state.settings
    return {
        "index": info,
        "server": {
            "uptime_s": round(time.time() - state.started, 1),
            "writable": state.index.writable,
            "token_required_for_writes": bool(s.token),
            "max_upload_bytes": s.max_upload_bytes,
            "max_pixels": s.max_pixels,
            "default_k": s.default_k,
            "max_k": s.max_k,
            "cnn": state.gate.stats(),
        },
    }
