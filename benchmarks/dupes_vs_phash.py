"""Duplicate finding: lookalike's CNN descriptors + k-NN vs perceptual hashing (imagehash pHash).

Quality, on a generated set with hard negatives:
  * every shipped scikit-image photo (a "group") plus near-duplicate copies of it: rescaled,
    strongly recompressed, recoloured, brightened, captioned, bordered, blurred, lightly
    cropped (90-95 %);  all pairs inside a group are duplicates;
  * hard negatives, which must NOT be grouped: the two views of the stereo motorcycle scene
    (another angle), and for every photo two overlapping crops (left 60 % / right 60 %: the
    same object in two different framings). Pairs crop-vs-own-group are left out of the count
    (ambiguous); everything else between groups is a negative.
Precision / recall are over pairs. Thresholds are swept for both methods; the lookalike
default (lookalike.dupes.DEFAULT_THRESHOLD) and pHash at Hamming distance <= 8 (a usual
photo-tool setting) are reported too.

Speed, at 10k / 100k images: the search step only, on synthetic clustered descriptors for
lookalike (the index's default FAISS choice, k-NN per vector in batches) and random 64-bit
hashes for pHash (all-pairs Hamming k-NN with FAISS's binary flat index, which is how a tool
would avoid Python loops); plus the measured per-image cost of computing each signature.

    .venv/bin/python benchmarks/dupes_vs_phash.py [--sizes 10000,100000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "dupes_vs_phash.json"
LIGHT_EDITS = ["rescale", "jpeg", "colour", "brightness", "caption", "border", "blur"]
PHASH_DEFAULT = 8
# Texture photos (a brick wall, gravel, grass, printed text, a cell culture...) look the same in
# every framing, so "two crops of one texture" is not a meaningful hard negative: crops are made
# of the photos that show objects or scenes only.
CROP_PHOTOS = {
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "clock",
    "coins",
    "moon",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
}


def build_set(out: Path, seed: int = 0):
    """Write the images; return (paths, group of each path, ambiguous pairs)."""
    from lookalike.edits import apply_edit
    from lookalike.samples import sample_photos

    photos = sample_photos()
    paths, groups = [], []
    ambiguous: set[tuple[int, int]] = set()
    g = 0
    for name, image in photos.items():
        members = [("orig", image)]
        for j, edit in enumerate(LIGHT_EDITS):
            members.append((edit, apply_edit(edit, image, seed + 97 * g + j)))
        w, h = image.size
        light = image.crop((int(0.03 * w), int(0.04 * h), int(0.97 * w), int(0.95 * h)))
        members.append(("crop95", light))
        first = len(paths)
        for tag, im in members:
            p = out / f"{name}__{tag}.jpg"
            im.convert("RGB").save(p, quality=90)
            paths.append(p)
            groups.append(g)
        # hard negatives: two different framings of the same scene, each its own group
        own = range(first, len(paths))
        crops = (("left60", (0, 0, int(0.6 * w), h)), ("right60", (int(0.4 * w), 0, w, h)))
        for tag, box in crops if name in CROP_PHOTOS else ():
            g += 1
            p = out / f"{name}__{tag}.jpg"
            image.crop(box).save(p, quality=90)
            idx = len(paths)
            paths.append(p)
            groups.append(g)
            ambiguous.update((min(i, idx), max(i, idx)) for i in own)
        g += 1
    return paths, np.asarray(groups), ambiguous


def pair_labels(groups: np.ndarray, ambiguous: set[tuple[int, int]]):
    n = len(groups)
    iu = np.triu_indices(n, 1)
    same = groups[iu[0]] == groups[iu[1]]
    keep = np.array([(a, b) not in ambiguous for a, b in zip(*iu, strict=True)])
    return iu, same, keep


def prf(pred: np.ndarray, same: np.ndarray, keep: np.ndarray) -> dict:
    tp = int(np.sum(pred & same & keep))
    fp = int(np.sum(pred & ~same & keep))
    fn = int(np.sum(~pred & same & keep))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
        "fp": fp,
        "fn": fn,
    }


def pred_from_groups(n: int, id_to_pos: dict[int, int], groups) -> np.ndarray:
    label = np.arange(n)
    for gi, g in enumerate(groups):
        for i in g.ids:
            label[id_to_pos[i]] = n + gi
    iu = np.triu_indices(n, 1)
    return label[iu[0]] == label[iu[1]]


def quality(workdir: Path) -> dict:
    import imagehash
    from PIL import Image

    from lookalike.dupes import DEFAULT_THRESHOLD, find_duplicates
    from lookalike.engine import Index

    img_dir = workdir / "images"
    img_dir.mkdir()
    paths, groups, ambiguous = build_set(img_dir)
    # the motorcycle stereo pair: another angle of one scene -> different groups already
    n = len(paths)
    iu, same, keep = pair_labels(groups, ambiguous)

    t0 = time.perf_counter()
    with Index.create(workdir / "idx") as idx:
        idx.sync([img_dir])
        index_s = time.perf_counter() - t0
        id_to_pos = {idx.catalog.find_path(str(p.absolute())).id: i for i, p in enumerate(paths)}
        pos_ids = sorted(id_to_pos, key=id_to_pos.get)
        got, raw = idx.catalog.descriptors(pos_ids)
        vecs = np.empty((n, idx.search_dim), dtype=np.float32)
        vecs[[id_to_pos[int(i)] for i in got]] = idx.transform(raw)
        sims = (vecs @ vecs.T)[iu]  # evaluation only: the finder itself never builds this
        t0 = time.perf_counter()
        found = find_duplicates(idx)
        find_s = time.perf_counter() - t0
        whitened = idx.manifest.whitening is not None
    lk_default = prf(pred_from_groups(n, id_to_pos, found), same, keep)

    t0 = time.perf_counter()
    hashes = [imagehash.phash(Image.open(p)) for p in paths]
    phash_s = time.perf_counter() - t0
    bits = np.stack([h.hash.reshape(-1) for h in hashes])
    dist = (bits[:, None, :] != bits[None, :, :]).sum(-1)[iu]

    pos_scores = sims[same & keep]
    neg_scores = sims[~same & keep]
    hard = ~same & keep & _hard_mask(paths, iu)
    sweep_lk = [
        {"threshold": t, **prf(sims >= t, same, keep)}
        for t in np.round(np.arange(0.50, 0.99, 0.02), 2)
    ]
    sweep_ph = [{"max_distance": d, **prf(dist <= d, same, keep)} for d in range(0, 33, 2)]
    per_edit = {}
    names = [p.stem.split("__")[1] for p in paths]
    for edit in ["orig-vs-" + e for e in [*LIGHT_EDITS, "crop95"]]:
        e = edit.split("-vs-")[1]
        m = np.array([{names[a], names[b]} == {"orig", e} for a, b in zip(*iu, strict=True)]) & same
        per_edit[e] = {
            "lookalike_min": round(float(sims[m].min()), 4),
            "phash_max_distance": int(dist[m].max()),
        }
    return {
        "images": n,
        "positive_pairs": int(np.sum(same & keep)),
        "negative_pairs": int(np.sum(~same & keep)),
        "hard_negative_pairs": int(np.sum(hard)),
        "index_whitened": whitened,
        "lookalike_default_threshold": DEFAULT_THRESHOLD,
        "lookalike_default": lk_default,
        "lookalike_positive_min": round(float(pos_scores.min()), 4),
        "lookalike_hard_negative_max": round(float(sims[hard].max()), 4),
        "lookalike_negative_max": round(float(neg_scores.max()), 4),
        "phash_default_distance": PHASH_DEFAULT,
        "phash_default": prf(dist <= PHASH_DEFAULT, same, keep),
        "phash_positive_max_distance": int(dist[same & keep].max()),
        "phash_hard_negative_min_distance": int(dist[hard].min()),
        "lookalike_best": max(sweep_lk, key=lambda r: r["f1"]),
        "phash_best": max(sweep_ph, key=lambda r: r["f1"]),
        "per_edit": per_edit,
        "seconds": {
            "index": round(index_s, 2),
            "find": round(find_s, 3),
            "phash_hashing": round(phash_s, 3),
        },
        "sweep_lookalike": sweep_lk,
        "sweep_phash": sweep_ph,
    }


def _hard_mask(paths, iu):
    names = [p.stem for p in paths]
    out = []
    for a, b in zip(*iu, strict=True):
        x, y = names[a], names[b]
        crops = x.endswith(("left60", "right60")) and y.endswith(("left60", "right60"))
        same_photo = x.split("__")[0] == y.split("__")[0]
        moto = x.startswith("motorcycle_") and y.startswith("motorcycle_") and same_photo is False
        out.append((crops and same_photo) or moto)
    return np.array(out)


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def speed(sizes: list[int], workdir: Path, dim: int = 1280) -> list[dict]:
    import faiss

    from lookalike.dupes import find_duplicates
    from lookalike.engine import Index
    from lookalike.index.manifest import IndexSettings

    rows = []
    for n in sizes:
        raw = clustered(n, dim, seed=n)
        # make 1 % of them near copies so there is something to find
        m = n // 100
        raw[:m] = raw[m : 2 * m] + 0.01 * np.random.default_rng(1).standard_normal((m, dim))
        with Index.create(workdir / f"speed{n}", IndexSettings(whiten_dim=256)) as idx:
            t0 = time.perf_counter()
            idx.add_vectors([f"/synthetic/{i}.jpg" for i in range(n)], raw)
            add_s = time.perf_counter() - t0
            key = idx.info()["index_key"]
            t0 = time.perf_counter()
            groups = find_duplicates(idx, exact=False)
            lk_s = time.perf_counter() - t0
        rng = np.random.default_rng(n)
        codes = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
        t0 = time.perf_counter()
        bindex = faiss.IndexBinaryFlat(64)
        bindex.add(codes)
        bindex.search(codes, 9)
        ph_s = time.perf_counter() - t0
        rows.append(
            {
                "n": n,
                "lookalike_index_key": key,
                "lookalike_find_s": round(lk_s, 2),
                "lookalike_groups": len(groups),
                "lookalike_add_vectors_s": round(add_s, 2),
                "phash_knn_s": round(ph_s, 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def signature_cost(workdir: Path) -> dict:
    """ms per 640x480-ish photo: pHash vs lookalike's descriptor (+ labels, same pass)."""
    import imagehash
    from PIL import Image

    from lookalike.extract import Extractor

    files = sorted((workdir / "images").glob("*__orig.jpg"))
    t0 = time.perf_counter()
    for _ in range(3):
        for f in files:
            imagehash.phash(Image.open(f))
    ph = (time.perf_counter() - t0) / (3 * len(files))
    ex = Extractor()
    ex.describe_path(files[0])  # warm-up (model load)
    t0 = time.perf_counter()
    for f in files:
        ex.describe_path(f)
    lk = (time.perf_counter() - t0) / len(files)
    return {
        "phash_ms_per_image": round(1000 * ph, 2),
        "lookalike_ms_per_image": round(1000 * lk, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--quick", action="store_true", help="quality only, no timing at scale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        q = quality(work)
        cost = signature_cost(work)
        sizes = [] if args.quick else [int(s) for s in args.sizes.split(",") if s]
        rows = speed(sizes, work)
    print(
        f"\n{q['images']} images, {q['positive_pairs']} duplicate pairs, "
        f"{q['negative_pairs']} non-duplicate pairs ({q['hard_negative_pairs']} hard)"
    )
    print("| method | setting | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    d, b = q["lookalike_default"], q["lookalike_best"]
    print(
        f"| lookalike | default cosine >= {q['lookalike_default_threshold']} | {d['precision']} | {d['recall']} | {d['f1']} |"  # noqa: E501
    )
    print(
        f"| lookalike | best sweep cosine >= {b['threshold']} | {b['precision']} | {b['recall']} | {b['f1']} |"  # noqa: E501
    )
    d, b = q["phash_default"], q["phash_best"]
    print(f"| pHash | Hamming <= {PHASH_DEFAULT} | {d['precision']} | {d['recall']} | {d['f1']} |")
    print(
        f"| pHash | best sweep Hamming <= {b['max_distance']} | {b['precision']} | {b['recall']} | {b['f1']} |"  # noqa: E501
    )
    print(
        f"lookalike: lowest duplicate score {q['lookalike_positive_min']}, "
        f"highest hard-negative score {q['lookalike_hard_negative_max']}"
    )
    print(
        f"pHash: largest duplicate distance {q['phash_positive_max_distance']}, "
        f"smallest hard-negative distance {q['phash_hard_negative_min_distance']}"
    )
    print("per edit:", json.dumps(q["per_edit"]))
    print("signature cost:", cost)
    if rows:
        print("| n | lookalike find (s) | FAISS index | pHash k-NN (s) |")
        print("|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['n']} | {r['lookalike_find_s']} | {r['lookalike_index_key']} | {r['phash_knn_s']} |"  # noqa: E501
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"quality": q, "signature_cost": cost, "speed": rows}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
