"""A trained model directory, as `lookalike train` writes it and `--model MODEL_DIR` reads it.

Torch-free: indexing and searching with a trained model only read this directory and run its
ONNX graph with ONNX Runtime.

    MODEL_DIR/
        model.json       what it is: base backbone, descriptor (GeM with the learned p),
                         training facts, format version
        model.onnx       the fine-tuned backbone, same inputs and outputs as the base models'
                         export (input -> feature_map, logits), dynamic batch/height/width
        whitening.npz    the learned supervised whitening ("lw", lookalike.whitening format);
                         absent when training decided against it

The model's identity is `model_hash`: a SHA-256 over the descriptor, the ONNX graph and the
whitening file. An index records the path, base and hash, and refuses a model whose hash
differs (a retrained or edited directory gives other descriptors).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import ConfigError, IndexCorruptError

__all__ = [
    "MODEL_FILE",
    "ONNX_FILE",
    "WHITENING_FILE",
    "MODEL_FORMAT_VERSION",
    "TrainedModel",
    "load_trained_model",
    "is_model_dir",
]

MODEL_FILE = "model.json"
ONNX_FILE = "model.onnx"
WHITENING_FILE = "whitening.npz"
MODEL_FORMAT_VERSION = 1
MODEL_KIND = "lookalike-retrieval-model"


@dataclass(frozen=True)
class TrainedModel:
    """A fine-tuned retrieval model on disk (see the module docstring)."""

    path: Path
    base: str
    descriptor: str
    hash: str
    has_whitening: bool
    info: dict

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def whitening_path(self) -> Path | None:
        return self.path / WHITENING_FILE if self.has_whitening else None

    def load_whitening(self):
        """The supervised whitening (lookalike.whitening.Whitening), or None."""
        from lookalike.whitening import Whitening

        path = self.whitening_path
        return Whitening.load(path) if path is not None else None

    def ref(self) -> dict:
        """What an index records about it: path, base and hash."""
        return {"path": str(self.path), "base": self.base, "hash": self.hash}


def is_model_dir(path: str | Path) -> bool:
    return (Path(path).expanduser() / MODEL_FILE).is_file()


def model_hash(path: Path, descriptor: str, has_whitening: bool) -> str:
    """SHA-256 (first 16 hex digits) of the descriptor, the ONNX graph and the whitening."""
    digest = hashlib.sha256(descriptor.encode())
    files = [path / ONNX_FILE] + ([path / WHITENING_FILE] if has_whitening else [])
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_trained_model(path: str | Path) -> TrainedModel:
    """Read MODEL_DIR; ConfigError when it is not a model directory, IndexCorruptError when its
    files are unreadable or inconsistent."""
    from lookalike.backbone import MODELS
    from lookalike.pooling import parse_descriptor

    path = Path(path).expanduser().absolute()
    meta_path = path / MODEL_FILE
    if not path.is_dir():
        raise ConfigError(
            f"{path}: no such model: expected one of {', '.join(MODELS)} or a folder written "
            "by 'lookalike train'"
        )
    if not meta_path.is_file():
        raise ConfigError(f"{path}: not a trained model folder (no {MODEL_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{meta_path}: cannot read ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
        raise IndexCorruptError(f"{meta_path}: not a lookalike model description")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise IndexCorruptError(
            f"{meta_path}: model format version {meta.get('format_version')!r} is not "
            f"supported (this lookalike reads version {MODEL_FORMAT_VERSION})"
        )
    base = meta.get("base")
    if base not in MODELS:
        raise IndexCorruptError(f"{meta_path}: unknown base model {base!r}")
    try:
        descriptor = str(parse_descriptor(str(meta.get("descriptor"))))
    except ConfigError as exc:
        raise IndexCorruptError(f"{meta_path}: bad descriptor: {exc}") from exc
    has_whitening = bool(meta.get("whitening"))
    for name in [ONNX_FILE] + ([WHITENING_FILE] if has_whitening else []):
        if not (path / name).is_file():
            raise IndexCorruptError(f"{path}: {name} is missing")
    return TrainedModel(
        path=path,
        base=base,
        descriptor=descriptor,
        hash=model_hash(path, descriptor, has_whitening),
        has_whitening=has_whitening,
        info=meta,
    )


def write_model_json(path: Path, meta: dict) -> None:
    """Write model.json (the last file a training run writes: a folder without it is not a
    model)."""
    data = {"kind": MODEL_KIND, "format_version": MODEL_FORMAT_VERSION, **meta}
    tmp = path / (MODEL_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path / MODEL_FILE)


def resolve_model(model: str | Path | None, descriptor: str | None = None) -> dict:
    """Settings fields for `--model`: a backbone name gives {"model": name}; a trained model
    folder gives its base, folder, hash and descriptor. A `descriptor` other than the trained
    model's is refused (its GeM p was learned with it)."""
    from lookalike.backbone import MODELS
    from lookalike.pooling import parse_descriptor

    if model is None:
        return {"descriptor": descriptor} if descriptor is not None else {}
    text = str(model)
    if text in MODELS and not is_model_dir(text):
        out: dict = {"model": text}
        if descriptor is not None:
            out["descriptor"] = descriptor
        return out
    trained = load_trained_model(text)
    if descriptor is not None and str(parse_descriptor(descriptor)) != trained.descriptor:
        raise ConfigError(
            f"--descriptor {descriptor}: the trained model {trained.path} was trained for "
            f"{trained.descriptor}; leave --descriptor out"
        )
    return {
        "model": trained.base,
        "model_dir": str(trained.path),
        "model_hash": trained.hash,
        "descriptor": trained.descriptor,
    }
