"""Export a backbone to ONNX once and cache it (the only place that needs torch for inference).

The PyTorch model pads each stride-2 convolution with TF "SAME" pads computed from the input's
size; traced, that becomes a Pad node fed by a chain of Shape/Gather/arithmetic nodes per
convolution. ONNX's `auto_pad="SAME_UPPER"` pads exactly like TF "SAME" (output
ceil(size / stride), the odd pixel after), so `simplify_same_pads` rewrites every such
Pad -> Conv pair into one Conv with `auto_pad="SAME_UPPER"` and drops the shape arithmetic.
Outputs are identical at every batch, height and width (tests/integration/test_backbone.py) and
ONNX Runtime runs it 1.2-1.3x faster (BENCHMARKS.md). The graph keeps dynamic batch, height and
width.

Writes go to a temporary file in the cache folder and are renamed into place, so concurrent
processes never see a partial file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from lookalike.backbone.facts import ONNX_OPSET, get_model_info, onnx_path

__all__ = ["export_onnx", "export_module", "simplify_same_pads", "write_atomic"]

log = logging.getLogger(__name__)


def write_atomic(path: Path, write: Any) -> Path:
    """Call `write(tmp_path)` on a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def simplify_same_pads(model: Any) -> int:
    """Rewrite each constant-mode Pad feeding only a Conv into the Conv's own
    `auto_pad="SAME_UPPER"`, then remove the nodes nothing uses any more. Changes `model` (an
    onnx.ModelProto) in place and returns the number of convolutions rewritten.

    Only Pads that the exporter wrote for TF "SAME" (spatial pads only, zero value) are
    touched; a Conv that already has explicit pads is left alone.
    """
    import onnx
    from onnx import helper

    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}

    rewritten = 0
    for node in graph.node:
        if node.op_type != "Conv" or not node.input:
            continue
        pad = producers.get(node.input[0])
        if pad is None or pad.op_type != "Pad" or len(consumers.get(pad.output[0], [])) != 1:
            continue
        mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
        if mode != b"constant":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "pads" in attrs and any(attrs["pads"].ints):
            continue
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"", b"NOTSET"):
            continue
        kept = [a for a in node.attribute if a.name not in ("pads", "auto_pad")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("auto_pad", "SAME_UPPER"))
        node.input[0] = pad.input[0]
        rewritten += 1

    # Drop every node whose outputs no longer reach a graph output.
    needed = {o.name for o in graph.output}
    keep: list[Any] = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for node in graph.node for i in node.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    return rewritten


def export_module(model: Any, path: Path, input_size: int = 224) -> Path:
    """Export an EfficientNetLite-shaped torch module (outputs feature map and logits) to ONNX
    at `path` the way lookalike exports its backbones: opset 17, dynamic batch/height/width,
    stride-2 convolutions rewritten to SAME_UPPER (`simplify_same_pads`), written atomically.
    Needs torch (and onnx). Used by `export_onnx` and by anything exporting a fine-tuned copy."""
    import onnx
    import torch

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings and the exporter's deprecation note
            torch.onnx.export(
                model.eval(),
                (torch.zeros(1, 3, input_size, input_size),),
                tmp,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=["input"],
                output_names=["feature_map", "logits"],
                dynamic_axes={
                    "input": {0: "batch", 2: "height", 3: "width"},
                    "feature_map": {0: "batch", 2: "fmap_height", 3: "fmap_width"},
                    "logits": {0: "batch"},
                },
            )
        graph = onnx.load(tmp)
        count = simplify_same_pads(graph)
        log.info("%s: %d convolutions use auto_pad=SAME_UPPER", path.name, count)
        onnx.save(graph, tmp)

    return write_atomic(Path(path), write)


def export_onnx(name: str = "lite0", path: Path | None = None, force: bool = False) -> Path:
    """Export `name` to ONNX (opset 17, dynamic batch/height/width, SAME_UPPER convolutions)
    unless already cached; returns the graph's path. Needs torch only when it exports."""
    path = Path(path) if path is not None else onnx_path(name)
    if path.exists() and not force:
        return path
    from lookalike.backbone.efficientnet import load_model

    log.info("exporting %s to ONNX at %s (once; later runs reuse it)", name, path)
    return export_module(load_model(name), path, get_model_info(name).input_size)
