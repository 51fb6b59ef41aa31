"""When is a PCA-whitening learned on the collection itself worth using, and how regularized?

Learns whitening on a collection's own descriptors (as the engine does) for a grid of output
dimensions, eigenvalue shrinkage and power, and training sizes, and compares mAP with no
whitening, on an instance-level collection (photos + edited copies) and a category-level one
(random crops of the photos). Descriptors: lite0, GeM p=3, 320 px.

    .venv/bin/python benchmarks/whitening_rule.py
"""

from __future__ import annotations

import json

import numpy as np

from lookalike.whitening import fit_whitening, whitening_allowed
from retrieval_common import (
    RESULTS,
    category_collection,
    feature_maps,
    groups_map,
    instance_collection,
    pooled,
)

DIMS = (32, 64, 128, 256)
SHRINK = (0.0, 0.1, 0.3, 1.0)
POWERS = (0.5, 0.25)
TRAIN_SIZES = (64, 128, 256)


def main() -> None:
    rows = []
    for name, (images, labels) in (
        ("instance", instance_collection()),
        ("category", category_collection(per_photo=16)),
    ):
        maps, ips = feature_maps(images, "lite0", 320)
        x = pooled(maps, "gem:p=3")
        base = groups_map(x, labels)
        rows.append(
            {
                "collection": name,
                "n": len(x),
                "train_n": 0,
                "dim": 0,
                "shrinkage": None,
                "power": None,
                "map": base,
                "delta": 0.0,
            }
        )
        print(f"{name}: {len(x)} images, no whitening mAP {base:.4f}")
        rng = np.random.default_rng(0)
        for train_n in (*TRAIN_SIZES, len(x)):
            if train_n > len(x):
                continue
            train = x[rng.choice(len(x), train_n, replace=False)] if train_n < len(x) else x
            for dim in DIMS:
                if dim > train_n - 1:
                    continue
                for shrink in SHRINK:
                    for power in POWERS:
                        w = fit_whitening(train, dim, shrinkage=shrink, power=power)
                        m = groups_map(w.apply(x), labels)
                        rows.append(
                            {
                                "collection": name,
                                "n": len(x),
                                "train_n": train_n,
                                "dim": dim,
                                "shrinkage": shrink,
                                "power": power,
                                "map": m,
                                "delta": m - base,
                                "rule_allows": whitening_allowed(train_n, dim),
                            }
                        )
    print(
        f"\n{'collection':10s} {'train':>5s} {'dim':>4s} {'shrink':>6s} {'power':>5s} "
        f"{'mAP':>7s} {'delta':>7s}"
    )
    for r in rows:
        if r["dim"]:
            print(
                f"{r['collection']:10s} {r['train_n']:5d} {r['dim']:4d} {r['shrinkage']:6g} "
                f"{r['power']:5g} {r['map']:7.4f} {r['delta']:+7.4f}"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "whitening_rule.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
