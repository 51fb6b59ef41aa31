"""Does the label-free whitening self-check agree with the labels?

For each collection, several candidate whitenings (lookalike's regularized default and textbook
PCA-whitening, at two dimensions) are judged twice: by the self-check of
lookalike.whitening_check (no labels: edited copies of held-out images, neighbour overlap), and
by the labels (groups-protocol mAP with vs without that whitening, learned on the whole
collection as the index would). A good check says "on" only where the labels say it helps.

Collections: the unseen-groups and category sets of benchmarks/training_unseen.py (built
first with that script; pass its --out folder), and the shipped photos with their edits
(benchmarks/retrieval_common.py instance collection).

    .venv/bin/python benchmarks/whitening_selfcheck.py [--data /tmp/lookalike-train-bench/data]

Writes benchmarks/results/whitening_selfcheck.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
MAX_SIDE = 320


def describe_folder(root: Path, extractor):
    from lookalike.images import iter_image_files, load_image

    images, labels, names = [], [], {}
    for path in iter_image_files(root):
        images.append(load_image(path, MAX_SIDE))
        labels.append(names.setdefault(path.parent.name, len(names)))
    x = np.stack([extractor.describe_image(im).descriptor for im in images])
    return images, x, np.asarray(labels)


def main() -> None:
    from lookalike.edits import apply_edit
    from lookalike.extract import Extractor
    from lookalike.training.trainer import groups_map
    from lookalike.whitening import fit_whitening
    from lookalike.whitening_check import COPY_EDITS, check_whitening

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("/tmp/lookalike-train-bench/data"))
    ap.add_argument("--held", type=float, default=0.3)
    args = ap.parse_args()
    extractor = Extractor(max_side=MAX_SIDE)
    collections = {}
    for part in ("test", "category"):
        if (args.data / part).is_dir():
            collections[part] = describe_folder(args.data / part, extractor)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from retrieval_common import instance_collection

    images, labels = instance_collection(side=MAX_SIDE)
    x = np.stack([extractor.describe_image(im).descriptor for im in images])
    collections["edits"] = (images, x, labels)

    candidates = {
        "regularized 32": lambda r: fit_whitening(r, 32),
        "regularized 64": lambda r: fit_whitening(r, 64),
        "textbook 32": lambda r: fit_whitening(r, 32, shrinkage=0.0, power=0.5),
        "textbook 64": lambda r: fit_whitening(r, 64, shrinkage=0.0, power=0.5),
    }
    rows = []
    rng = np.random.default_rng(0)
    for name, (images, x, labels) in collections.items():
        held = rng.choice(len(x), int(args.held * len(x)), replace=False)
        copies = np.stack(
            [
                extractor.describe_image(
                    apply_edit(COPY_EDITS[i % len(COPY_EDITS)], images[h], i)
                ).descriptor
                for i, h in enumerate(held)
            ]
        )
        base = groups_map(x, labels)
        for label, fit in candidates.items():
            verdict, _ = check_whitening(x, held, copies, fit)
            whitened = groups_map(fit(x).apply(x), labels)
            row = {
                "collection": name,
                "images": len(x),
                "whitening": label,
                "map_raw": round(base, 4),
                "map_whitened": round(whitened, 4),
                "labels_say": "helps" if whitened > base else "hurts",
                "check_says": "on" if verdict.use else "off",
                **{k: v for k, v in verdict.to_dict().items() if k != "use"},
            }
            rows.append(row)
            print(
                f"{name:9s} {label:16s} mAP {base:.4f} -> {whitened:.4f} ({row['labels_say']:5s})"
                f"  check: {row['check_says']:3s} mrr {verdict.mrr_raw:.3f} -> "
                f"{verdict.mrr_whitened:.3f}, overlap {verdict.overlap:.2f}",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "whitening_selfcheck.json"
    out.write_text(json.dumps({"max_side": MAX_SIDE, "rows": rows}, indent=2) + "\n")
    agree = sum((r["labels_say"] == "helps") == (r["check_says"] == "on") for r in rows)
    print(f"check agrees with the labels in {agree}/{len(rows)} cases; wrote {out}")


if __name__ == "__main__":
    main()
