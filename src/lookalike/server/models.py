"""The HTTP API's JSON shapes: request bodies (strict: an id is an integer, never `true` or
"1"; a box holds four finite numbers) and response models, so the OpenAPI schema documents
what each route answers, errors included."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**63 - 1  # SQLite's largest integer: every id the catalog can hold
MAX_TEXT = 200

ImageId = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
Box = tuple[Coordinate, Coordinate, Coordinate, Coordinate]


# -- requests ---------------------------------------------------------------------------------


class SearchById(BaseModel):
    """Search from an indexed image: `{"id": N, "k": K}`; `box` (x0, y0, x1, y1, in that
    image's pixels) searches for that region only."""

    model_config = ConfigDict(extra="forbid")

    id: ImageId
    k: Annotated[int, Field(ge=1, strict=True)] | None = None
    box: Box | None = None
    localize: bool = Field(
        False, strict=True, description="Add each hit's box: where the query is in it."
    )


class SearchByText(BaseModel):
    """Search by words: `{"text": "a cup of coffee", "k": K}`. The words become ImageNet
    classes (WordNet, then a sentence model); hits are ranked by the probability the CNN gave
    those classes (see Index.search_text)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., max_length=MAX_TEXT, strict=True)
    k: Annotated[int, Field(ge=1, strict=True)] | None = None


# -- responses --------------------------------------------------------------------------------


class Problem(BaseModel):
    """Every error: `{"status": N, "message": "..."}`; validation errors add `errors`."""

    status: int
    message: str
    errors: list[dict[str, Any]] | None = None


class ImageInfo(BaseModel):
    """What the index knows about one image, with the URLs of its thumbnail and file."""

    id: int
    path: str
    width: int
    height: int
    size: int
    hash: str
    added_at: float
    thumbnail: str
    file: str


class Tag(BaseModel):
    class_id: int
    name: str
    prob: float


class SearchHit(BaseModel):
    """One hit. `box` only when localized; `tags` only for word searches; `width`/`height`
    only while the image is still in the index."""

    id: int
    path: str
    score: float
    box: list[int] | None = None
    tags: list[Tag] | None = None
    width: int | None = None
    height: int | None = None
    thumbnail: str
    file: str


class SearchResult(BaseModel):
    """`query` echoes what was searched (`id`, `text`, or `upload`/`width`/`height`, plus
    `box`); `ms` is the server-side time."""

    query: dict[str, Any]
    hits: list[SearchHit]
    ms: float
    matched: list[dict[str, Any]] | None = Field(
        None, description="Text searches: the ImageNet classes the words matched."
    )
    reason: str | None = Field(
        None, description="Text searches: why there are no hits (null when there are)."
    )


class Removed(BaseModel):
    removed: int
    path: str
    file_deleted: bool


class Health(BaseModel):
    status: str
    images: int
    writable: bool


class CnnStats(BaseModel):
    workers: int
    queue: int
    in_flight: int
    completed: int
    rejected_busy: int


class ServerStats(BaseModel):
    uptime_s: float
    writable: bool
    token_required_for_writes: bool
    max_upload_bytes: int
    max_pixels: int
    default_k: int
    max_k: int
    cnn: CnnStats


class Stats(BaseModel):
    index: dict[str, Any] = Field(description="As `lookalike info --json`.")
    server: ServerStats


ERROR_TEXT = {
    400: "A request the index refuses as it stands (e.g. a box that selects nothing).",
    401: "A valid bearer token is required (writes, when the server has a token).",
    403: "Writes are disabled, or the file lies outside the indexed folders.",
    404: "No image with this id, or its file is gone.",
    409: "The index is locked by another writer, or the file changed since it was indexed.",
    413: "The body, the upload or its pixel count is over the server's limits.",
    415: "Not a media type this route takes, or an upload that is not an image.",
    422: "A parameter or body field is invalid, or the JSON body is malformed, nested too "
    "deeply or holds NaN/Infinity (the message names what).",
    503: "The server is busy with other image searches (see Retry-After).",
    507: "The server's disk is full: nothing was added.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error code with the Problem model."""
    return {code: {"model": Problem, "description": ERROR_TEXT[code]} for code in codes}
