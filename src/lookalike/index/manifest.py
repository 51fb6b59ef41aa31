"""manifest.json: how an index was built, and which derived state is on disk.

Settings (model, descriptor, max_side, scales, whitening dimension, FAISS key) are fixed when the
index is created; an index is never searched or extended with other settings. The derived part
(whitening trained on how many images, FAISS index built at which catalog generation) changes as
the collection does.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lookalike.errors import ConfigError, DiskFullError, IndexCorruptError, is_disk_full

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

DEFAULT_MODEL = "lite0"
DEFAULT_DESCRIPTOR = "gem:p=3"
DEFAULT_MAX_SIDE = 480
DEFAULT_WHITEN_DIM = 256


class IndexSettings(BaseModel):
    """What an index is built with. Two indexes with different settings are not comparable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = DEFAULT_MODEL  # the backbone (a trained model's base)
    # a model fine-tuned by `lookalike train`: its folder and hash (lookalike.training.model_dir)
    model_dir: str | None = None
    model_hash: str | None = None
    descriptor: str = DEFAULT_DESCRIPTOR
    max_side: int = Field(DEFAULT_MAX_SIDE, ge=32, le=4096)
    scales: tuple[float, ...] = (1.0,)
    whiten_dim: int = Field(DEFAULT_WHITEN_DIM, ge=0)
    index_key: str | None = None  # None: chosen from the collection size
    index_params: str = ""
    # database-side augmentation of the stored vectors ("alpha:n=3,alpha=3"); None: off
    dba: str | None = None
    # where the search vectors live: "faiss" (a file in the index directory) or "milvus:URI"
    # (a Milvus collection; see lookalike.index.backends.parse_store)
    store: str = "faiss"

    @field_validator("store")
    @classmethod
    def _store_spec(cls, value: str) -> str:
        from lookalike.index.backends import parse_store

        try:
            return parse_store(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _store_supports(self) -> IndexSettings:
        if self.store != "faiss" and self.dba:
            raise ValueError("dba needs the faiss store (augmented vectors are rebuilt in memory)")
        return self

    # the CNN's arithmetic: "fp32" (the exported graph) or "int8" (its static quantization);
    # manifests written before this setting existed read as "fp32"
    precision: str = "fp32"

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        from lookalike.backbone.facts import PRECISIONS

        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
        return value

    @field_validator("dba")
    @classmethod
    def _dba_spec(cls, value: str | None) -> str | None:
        from lookalike.postprocess.qe import parse_expansion

        try:
            spec = parse_expansion(value)
        except ConfigError as exc:
            raise ValueError(str(exc).replace("query expansion", "DBA")) from None
        return str(spec) if spec is not None else None

    @model_validator(mode="after")
    def _trained_model(self) -> IndexSettings:
        if (self.model_dir is None) != (self.model_hash is None):
            raise ValueError(
                "model_dir and model_hash go together (a trained model's folder "
                "and hash, as lookalike.training.model_dir.resolve_model gives)"
            )
        return self

    @field_validator("scales")
    @classmethod
    def _scales_positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(s <= 0 or s > 4 for s in value):
            raise ValueError("scales must be a non-empty list of numbers in (0, 4]")
        return tuple(float(s) for s in value)

    def extraction(self) -> dict:
        """The settings that determine a raw descriptor (must match between index and query)."""
        out = {
            "model": self.model,
            "descriptor": self.descriptor,
            "max_side": self.max_side,
            "scales": list(self.scales),
            "precision": self.precision,
        }
        if self.model_dir is not None:
            out.update(model_dir=self.model_dir, model_hash=self.model_hash)
        return out


class WhiteningState(BaseModel):
    kind: str
    dim: int
    trained_on: int
    file: str = "whitening.npz"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    lookalike_version: str
    settings: IndexSettings
    dim: int | None = None  # raw descriptor dimension, known after the first vector
    whitening: WhiteningState | None = None
    # the last whitening decision (lookalike.whitening_check.decide_whitening): numbers, reason
    whitening_check: dict | None = None
    index_key: str | None = None  # the FAISS key of the index file on disk
    index_params: str = ""
    index_generation: int = -1  # catalog generation the FAISS file reflects
    # the Milvus collection holding the search vectors (settings.store "milvus:...")
    vector_collection: str | None = None
    # Created with the index; derived files carry it (with the generation) so that a file
    # from another index is never taken for this one's. None: made before identity stamps.
    index_id: str | None = None

    @property
    def search_dim(self) -> int | None:
        return self.whitening.dim if self.whitening else self.dim


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path}: cannot read the manifest ({exc})") from exc
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path}: index format version {version!r} is not supported "
            f"(this lookalike reads version {FORMAT_VERSION})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise IndexCorruptError(f"{path}: invalid manifest: {exc.errors()[0]['msg']}") from exc


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomic: a reader sees the old manifest or the new one, never half of one."""
    path = directory / MANIFEST_NAME
    data = manifest.model_dump_json(indent=2) + "\n"
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=MANIFEST_NAME + ".", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path, "write the manifest") from exc
        raise
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def validate_settings(**kwargs: object) -> IndexSettings:
    """Build IndexSettings from user input, raising ConfigError naming the bad field."""
    try:
        return IndexSettings(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from exc
