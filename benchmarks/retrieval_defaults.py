"""Choosing lookalike's retrieval defaults by measurement: model, input size, pooling (and
GeM's p), multi-scale, whitening, query expansion and DBA, with their speed.

Collections (see retrieval_common.py): the instance collection (19 shipped photos x 13 edits +
originals = 266 images, every image a query) is the main one; the category collection (random
crops) checks that a setting does not hurt on looser matches. Feature maps are computed once
per (model, input size, scale) and pooled every way, so the pooling rows share one CNN pass.

    .venv/bin/python benchmarks/retrieval_defaults.py [--quick]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from lookalike.postprocess.qe import dba, expand_batch, parse_expansion
from lookalike.whitening import fit_whitening, whitening_allowed
from retrieval_common import (
    RESULTS,
    category_collection,
    feature_maps,
    groups_map,
    instance_collection,
    pooled,
)

POOLINGS = ("mac", "spoc", "gem:p=2", "gem:p=3", "gem:p=4", "rmac:levels=3")


def qe_map(x, labels, spec: str | None, dba_spec: str | None) -> float:
    if dba_spec:
        x = dba(x, parse_expansion(dba_spec))
    if spec:
        scores = x @ x.T
        np.fill_diagonal(scores, -np.inf)  # the query itself is excluded (groups protocol)
        q = expand_batch(x, x, parse_expansion(spec), scores)
        # rank with the expanded query; groups_map excludes the diagonal itself
        s = q @ x.T
        return _map_scores(s, labels)
    return groups_map(x, labels)


def _map_scores(scores, labels) -> float:
    from lookalike.evaluation.metrics import average_precision, rank_by_scores

    scores = scores.copy()
    np.fill_diagonal(scores, -np.inf)
    ranks = rank_by_scores(scores)
    aps = []
    for i in range(len(labels)):
        pos = set(np.flatnonzero(labels == labels[i]).tolist()) - {i}
        aps.append(average_precision(ranks[i], pos, {i}))
    return float(np.mean(aps))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="lite0 only, fewer sizes")
    args = ap.parse_args()
    collections = {"instance": instance_collection(), "category": category_collection(12)}
    configs = [("lite0", 224), ("lite0", 320), ("lite0", 480)]
    if not args.quick:
        configs += [("lite2", 320)]  # lite2 at 480 measured no better, 2x slower
    rows = []

    def add(section, setting, model, side, values, ips):
        row = {
            "section": section,
            "setting": setting,
            "model": model,
            "max_side": side,
            "images_per_s": round(ips, 1),
            **{k: round(v, 4) for k, v in values.items()},
        }
        rows.append(row)
        vals = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(
            f"{section:10s} {model:5s} {side:4d} {setting:28s} {vals}  ({ips:.0f} img/s)",
            flush=True,
        )

    feats = {}
    for model, side in configs:
        scales = (1.0, 0.707) if (model, side) == ("lite0", 480) else (1.0,)
        for cname, (images, _labels) in collections.items():
            feats[(model, side, cname)] = feature_maps(images, model, side, scales, both=True)
        ips = feats[(model, side, "instance")][1]
        for pooling in POOLINGS:
            values = {
                c: groups_map(pooled(feats[(model, side, c)][0], pooling), lab)
                for c, (_, lab) in collections.items()
            }
            add("pooling", pooling, model, side, values, ips)
        if (model, side) != ("lite0", 480):
            for c in collections:
                feats[(model, side, c)] = (None, feats[(model, side, c)][1])  # free memory
    # multi-scale at lite0 480
    maps = {c: feats[("lite0", 480, c)][0] for c in collections}
    ips = feats[("lite0", 480, "instance")][1]
    ips2 = feats[("lite0", 480, "instance")][2]
    for pooling in ("gem:p=3", "rmac:levels=3"):
        values = {
            c: groups_map(pooled(maps[c], pooling, 2), collections[c][1]) for c in collections
        }
        add("scales", f"{pooling} scales 1,0.707", "lite0", 480, values, ips2)
    # whitening, QE, DBA on lite0 480 GeM
    vecs = {c: pooled(maps[c], "gem:p=3") for c in collections}
    for dim in (64, 128, 192):  # the category collection has 228 images: dim < 228
        for shrink, power in ((0.0, 0.5), (0.1, 0.5), (1.0, 0.5), (1.0, 0.25)):
            values = {}
            for c, (_, lab) in collections.items():
                x = vecs[c]
                values[c] = groups_map(
                    fit_whitening(x, dim, shrinkage=shrink, power=power).apply(x), lab
                )
            allowed = whitening_allowed(len(vecs["instance"]), dim)
            add(
                "whitening",
                f"pcaw{dim} s={shrink:g} p={power:g}" + (" (rule: yes)" if allowed else ""),
                "lite0",
                480,
                values,
                ips,
            )
    for spec, dspec in (
        (None, None),
        ("aqe:n=1", None),
        ("aqe:n=2", None),
        ("aqe:n=3", None),
        ("alpha-qe:n=3,alpha=3", None),
        ("alpha-qe:n=5,alpha=3", None),
        (None, "aqe:n=1"),
        (None, "alpha-qe:n=3,alpha=3"),
        ("alpha-qe:n=3,alpha=3", "alpha-qe:n=3,alpha=3"),
    ):
        values = {c: qe_map(vecs[c], lab, spec, dspec) for c, (_, lab) in collections.items()}
        add("qe/dba", f"qe={spec} dba={dspec}", "lite0", 480, values, ips)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retrieval_defaults.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
