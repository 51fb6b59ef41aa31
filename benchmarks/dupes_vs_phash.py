"""Duplicate finding: lookalike (CNN k-NN candidates + verification) vs pHash alone vs the CNN
cosine alone, per kind and per edit type, with real hard negatives.

The set, made from scikit-image's shipped photos:
  * copies (kind `near`): for every photo an "original" plus copies after one edit each:
    rescaled (30-70 %), strongly recompressed (JPEG q5-20), half size at JPEG q40, recoloured,
    brightened or darkened, captioned, bordered, blurred, cropped (60-90 % of each side),
    mirrored, rotated (up to 10 degrees). All pairs inside such a group are duplicates;
  * different shots of one scene (must NOT be `near`; they are `similar`):
      - the stereo motorcycle pair (another angle; each view also gets its edited copies),
      - two overlapping crops of a photo (left 60 % / right 60 %) as separate "shots",
      - two burst-like frames: 80 % windows shifted by 8-15 % of the width from the original's
        framing, with brightness and contrast changes;
    for those photos the "original" is the central 80 % window, so every shot is another
    framing of the scene, not a crop of a file in the set. Shot-vs-cropped-copy pairs of one
    scene are left out of the count (a crop may well lie inside another framing);
  * everything else (different photos) is an easy negative.

Methods, pairwise: lookalike's finder (two images are `near` when they share an exact or near
group; `similar` likewise with --similar), pHash alone (Hamming <= 8 between the images or one
and the other's mirror: a usual photo-tool setting, and the best of a sweep) and the CNN cosine
alone (>= 0.80 and the best of a sweep).

Speed at scale: the k-NN candidate step of `find_duplicates` on synthetic clustered descriptors
(the index's automatic FAISS choice; verification needs files, so its per-pair cost is measured
on the real set and reported separately), with its peak memory.

    .venv/bin/python benchmarks/dupes_vs_phash.py [--sizes 100000,1000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "dupes_vs_phash.json"
EDIT_TYPES = [
    "rescale",
    "jpeg",
    "half_q40",
    "colour",
    "brightness",
    "caption",
    "border",
    "blur",
    "crop",
    "flip",
    "rotate",
]
PHASH_DEFAULT = 8
CNN_DEFAULT = 0.80
# Texture photos (a brick wall, gravel, grass, printed text, a cell culture...) look the same in
# every framing, so "two framings of one texture" is not a meaningful hard negative: shots are
# made of the photos that show objects or scenes only.
SHOT_PHOTOS = {
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "clock",
    "coins",
    "moon",
    "hubble_deep_field",
    "retina",
}


def edit(name: str, image, seed: int):
    from PIL import Image

    from lookalike.edits import apply_edit, crop, jpeg, rotate

    rng = np.random.default_rng(seed)
    if name == "half_q40":
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
        return jpeg(half, rng, 40, 40)
    if name == "crop":
        return crop(image, rng, 0.6, 0.9)
    if name == "rotate":
        return rotate(image, rng, 10.0)
    return apply_edit(name, image, seed)


def burst_frame(image, rng: np.random.Generator, direction: int):
    """An 80 % window shifted by 8-15 % of the width (and a little vertically) from the
    central window, with its own brightness and contrast: another frame of a burst."""
    from PIL import ImageEnhance

    w, h = image.size
    cw, ch = int(0.8 * w), int(0.8 * h)
    dx = direction * rng.uniform(0.08, 0.10) * w
    dy = rng.uniform(-0.05, 0.05) * h
    x0 = int(np.clip((w - cw) / 2 + dx, 0, w - cw))
    y0 = int(np.clip((h - ch) / 2 + dy, 0, h - ch))
    out = image.crop((x0, y0, x0 + cw, y0 + ch))
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.8, 1.2)))
    return ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.85, 1.15)))


def build_set(out: Path, seed: int = 0):
    """Write the images. Returns (paths, copy group of each, scene of each, kind of each:
    'orig', an edit type or a shot type)."""
    from lookalike.samples import sample_photos

    paths, groups, scenes, kinds = [], [], [], []
    g = 0

    def add(name: str, tag: str, image, group: int, scene: str) -> None:
        p = out / f"{name}__{tag}.jpg"
        image.convert("RGB").save(p, quality=90)
        paths.append(p)
        groups.append(group)
        scenes.append(scene)
        kinds.append(tag)

    for i, (name, image) in enumerate(sample_photos().items()):
        scene = "motorcycle" if name.startswith("motorcycle") else name
        w, h = image.size
        original = image
        if name in SHOT_PHOTOS:
            original = image.crop((int(0.1 * w), int(0.1 * h), int(0.9 * w), int(0.9 * h)))
        add(name, "orig", original, g, scene)
        for j, e in enumerate(EDIT_TYPES):
            add(name, e, edit(e, original, seed + 97 * i + j), g, scene)
        g += 1
        if name in SHOT_PHOTOS:
            rng = np.random.default_rng(seed + 1000 + i)
            shots = {
                "left60": image.crop((0, 0, int(0.6 * w), h)),
                "right60": image.crop((int(0.4 * w), 0, w, h)),
                "burst1": burst_frame(image, rng, -1),
                "burst2": burst_frame(image, rng, +1),
            }
            for tag, shot in shots.items():
                add(name, tag, shot, g, scene)
                g += 1
    return paths, np.asarray(groups), np.asarray(scenes), np.asarray(kinds)


def pair_categories(groups, scenes, kinds):
    """Upper-triangle index pairs and masks: positive (same copy group), hard negative
    (another shot of the same scene), easy negative, and ambiguous (left out)."""
    n = len(groups)
    iu = np.triu_indices(n, 1)
    a, b = iu
    same = groups[a] == groups[b]
    same_scene = scenes[a] == scenes[b]
    shot = np.isin(kinds, ["left60", "right60", "burst1", "burst2"])
    ambiguous = (
        same_scene & ~same & ((shot[a] & (kinds[b] == "crop")) | (shot[b] & (kinds[a] == "crop")))
    )
    hard = same_scene & ~same & ~ambiguous
    easy = ~same_scene
    return iu, same, hard, easy, ambiguous


def rates(pred: np.ndarray, pos: np.ndarray, neg: np.ndarray, hard: np.ndarray) -> dict:
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & neg))
    fn = int(np.sum(~pred & pos))
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
        "fp": fp,
        "fn": fn,
        "different_shots_called_near": round(float(np.mean(pred[hard])) if hard.any() else 0, 4),
    }


def per_edit(pred: np.ndarray, iu, same, kinds) -> dict:
    """Recall on original-vs-copy pairs, per edit type."""
    a, b = iu
    out = {}
    for e in EDIT_TYPES:
        m = same & (
            ((kinds[a] == "orig") & (kinds[b] == e)) | ((kinds[b] == "orig") & (kinds[a] == e))
        )
        out[e] = round(float(np.mean(pred[m])), 4) if m.any() else None
    return out


def group_labels(n: int, id_to_pos: dict[int, int], groups, kinds_wanted) -> np.ndarray:
    label = np.arange(n)
    for gi, g in enumerate(groups):
        if g.kind in kinds_wanted:
            for i in g.ids:
                label[id_to_pos[i]] = n + gi
    return label


def quality(workdir: Path) -> dict:
    from lookalike import dupes
    from lookalike.engine import Index
    from lookalike.verify.phash import distances, hash_pair

    img_dir = workdir / "images"
    img_dir.mkdir()
    paths, groups, scenes, kinds = build_set(img_dir)
    n = len(paths)
    iu, same, hard, easy, ambiguous = pair_categories(groups, scenes, kinds)
    neg = hard | easy

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
        stored = idx.catalog.phashes(pos_ids)
        t0 = time.perf_counter()
        found = dupes.find_duplicates(idx, similar=True)
        find_s = time.perf_counter() - t0
        # cost of one geometric verification, on the real set (features not cached)
        from lookalike.images import load_image
        from lookalike.verify.geometry import prepare, verify_prepared

        sample = [p for p in paths if p.stem.endswith(("__crop", "__flip", "__border"))][:12]
        t0 = time.perf_counter()
        for p in sample:
            orig = p.with_name(p.stem.split("__")[0] + "__orig.jpg")
            verify_prepared(prepare(load_image(orig)), prepare(load_image(p)))
        geometry_ms = 1000 * (time.perf_counter() - t0) / max(1, len(sample))
    label = group_labels(n, id_to_pos, found, {"exact", "near"})
    lk_near = label[iu[0]] == label[iu[1]]
    label_s = group_labels(n, id_to_pos, found, {"exact", "near", "similar"})
    lk_any = label_s[iu[0]] == label_s[iu[1]]

    hashes = np.array([stored[i] for i in pos_ids], dtype=np.uint64)
    d_plain = distances(hashes[iu[0], 0], hashes[iu[1], 0])
    d_mirror = distances(hashes[iu[0], 0], hashes[iu[1], 1])
    dist = np.minimum(d_plain, d_mirror)
    # the stored hash is the one computed from the decode at index time
    check = hash_pair(load_image(paths[0]))
    assert tuple(int(x) for x in hashes[0]) == check, "stored pHash differs from the file's"

    sweep_cnn = [
        {"threshold": float(t), **rates(sims >= t, same, neg, hard)}
        for t in np.round(np.arange(0.50, 0.99, 0.02), 2)
    ]
    sweep_ph = [{"max_distance": d, **rates(dist <= d, same, neg, hard)} for d in range(0, 33, 2)]
    methods = {
        "lookalike": lk_near,
        f"pHash <= {PHASH_DEFAULT}": dist <= PHASH_DEFAULT,
        f"CNN cosine >= {CNN_DEFAULT}": sims >= CNN_DEFAULT,
    }
    best_ph = max(sweep_ph, key=lambda r: r["f1"])
    best_cnn = max(sweep_cnn, key=lambda r: r["f1"])
    methods[f"pHash <= {best_ph['max_distance']} (best F1)"] = dist <= best_ph["max_distance"]
    methods[f"CNN cosine >= {best_cnn['threshold']} (best F1)"] = sims >= best_cnn["threshold"]
    near_table = {
        name: {**rates(pred, same, neg, hard), "per_edit": per_edit(pred, iu, same, kinds)}
        for name, pred in methods.items()
    }
    # `similar`: pairs of different shots of one scene (originals and shots, not the edited
    # copies, which join their original's near group), found by lookalike's similar groups
    shot_kind = np.isin(kinds, ["orig", "left60", "right60", "burst1", "burst2"])
    shots_pairs = hard & shot_kind[iu[0]] & shot_kind[iu[1]]
    similar_found = lk_any & ~lk_near
    similar = {
        "different_shot_pairs": int(shots_pairs.sum()),
        "cnn_quantiles_10_50_90": [
            round(float(x), 3) for x in np.quantile(sims[shots_pairs], [0.1, 0.5, 0.9])
        ],
        "recall_as_similar": round(float(np.mean(similar_found[shots_pairs])), 4),
        "precision": round(
            float(np.sum(similar_found & (shots_pairs | same)) / max(1, similar_found.sum())), 4
        ),
        "different_scene_pairs_grouped": int(np.sum(lk_any & easy)),
    }
    pos = same
    n_groups = {k: sum(1 for g in found if g.kind == k) for k in ("exact", "near", "similar")}
    return {
        "images": n,
        "positive_pairs": int(pos.sum()),
        "hard_negative_pairs": int(hard.sum()),
        "easy_negative_pairs": int(easy.sum()),
        "ambiguous_pairs_left_out": int(ambiguous.sum()),
        "groups": n_groups,
        "near": near_table,
        "similar": similar,
        "cnn_positive_min": round(float(sims[pos].min()), 4),
        "cnn_positive_min_per_edit": {
            e: round(float(sims[pos & ((kinds[iu[0]] == e) | (kinds[iu[1]] == e))].min()), 4)
            for e in EDIT_TYPES
        },
        "cnn_hard_negative_max": round(float(sims[hard].max()), 4),
        "phash_hard_negative_min": int(dist[hard].min()),
        "phash_hard_negatives_at_most": {d: int(np.sum(dist[hard] <= d)) for d in range(0, 13)},
        "phash_easy_negatives_at_most": {d: int(np.sum(dist[easy] <= d)) for d in range(0, 13)},
        "phash_positives_at_most": {d: int(np.sum(dist[pos] <= d)) for d in range(0, 13)},
        "near_evidence": {
            "phash": sum(
                1
                for g in found
                if g.kind == "near"
                for m in g.members[1:]
                if m.evidence.startswith("pHash")
            ),
            "geometry": sum(
                1
                for g in found
                if g.kind == "near"
                for m in g.members[1:]
                if m.evidence.startswith("geometry")
            ),
        },
        "settings": {
            "candidate_min": dupes.CANDIDATE_MIN,
            "phash_near": dupes.PHASH_NEAR,
            "similar": dupes.DEFAULT_SIMILAR,
            "k": dupes.DEFAULT_K,
        },
        "seconds": {
            "index": round(index_s, 2),
            "find_with_verification": round(find_s, 2),
            "geometry_ms_per_pair_uncached": round(geometry_ms, 1),
        },
        "sweep_cnn": sweep_cnn,
        "sweep_phash": sweep_ph,
    }


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 50), dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, dim)).astype(
        np.float32
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def speed(sizes: list[int], workdir: Path, dim: int, chunk: int = 50_000) -> list[dict]:
    """The candidate step of find_duplicates at scale, on synthetic clustered descriptors
    (1 % near copies) indexed with add_vectors in chunks; no files, so no verification."""
    from lookalike import dupes
    from lookalike.engine import Index
    from lookalike.index.manifest import IndexSettings

    rows = []
    for n in sizes:
        with Index.create(workdir / f"speed{n}", IndexSettings(whiten_dim=256)) as idx:
            t0 = time.perf_counter()
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                raw = clustered(m, dim, seed=n + start)
                # the first 1 % of every chunk: near copies of the next 1 %
                c = max(1, m // 100)
                raw[:c] = raw[c : 2 * c] + 0.01 * np.random.default_rng(start).standard_normal(
                    (c, dim)
                ).astype(np.float32)
                paths = [f"/synthetic/{i}.jpg" for i in range(start, start + m)]
                idx.add_vectors(paths, raw, refresh=False)
            idx.refresh()
            build_s = time.perf_counter() - t0
            key = idx.info()["index_key"]
            rss_before = _peak_rss_mb()
            knn_done = [0.0]

            def progress(done: int, total: int, mark=knn_done) -> None:
                mark[0] = time.perf_counter()

            t0 = time.perf_counter()
            groups = dupes.find_duplicates(idx, verify_files=False, similar=True, progress=progress)
            find_s = time.perf_counter() - t0
            knn_s = knn_done[0] - t0  # the last batch of k-NN queries ended here
            rss_after = _peak_rss_mb()
        rows.append(
            {
                "n": n,
                "dim": dim,
                "index_key": key,
                "build_s": round(build_s, 1),
                "candidate_knn_s": round(knn_s, 1),
                "near_groups": sum(1 for g in groups if g.kind == "near"),
                "find_duplicates_s": round(find_s, 1),
                "groups": len(groups),
                "peak_rss_mb_before_find": round(rss_before),
                "peak_rss_mb_after_find": round(rss_after),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=1280, help="synthetic descriptor size")
    ap.add_argument("--quick", action="store_true", help="quality only, no timing at scale")
    ap.add_argument("--speed-only", action="store_true", help="timing at scale only")
    args = ap.parse_args()
    sizes = [] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        q = None if args.speed_only else quality(work)
        rows = speed(sizes, work, args.dim) if sizes else None
    # the part not measured in this run is kept from the results file
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    q = q if q is not None else old.get("quality")
    rows = rows if rows is not None else old.get("speed", [])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"quality": q, "speed": rows}, indent=2))
    if q:
        print_quality(q)
    if rows:
        print("| n | FAISS index | k-NN candidates (s) | find_duplicates (s) | peak RSS (MB) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['n']:,} | {r['index_key']} | {r['candidate_knn_s']} | "
                f"{r['find_duplicates_s']} | {r['peak_rss_mb_after_find']} |"
            )
    print(f"wrote {RESULTS}")


def print_quality(q: dict) -> None:
    print(
        f"\n{q['images']} images, {q['positive_pairs']} copy pairs, "
        f"{q['hard_negative_pairs']} different-shot pairs of one scene, "
        f"{q['easy_negative_pairs']} other pairs ({q['ambiguous_pairs_left_out']} left out)"
    )
    print("| method | near precision | near recall | different shots called near |")
    print("|---|---|---|---|")
    for name, r in q["near"].items():
        print(f"| {name} | {r['precision']} | {r['recall']} | {r['different_shots_called_near']} |")
    print("\nrecall per edit type (original vs copy):")
    names = list(q["near"])
    print("| edit | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for e in EDIT_TYPES:
        print(f"| {e} | " + " | ".join(str(q["near"][m]["per_edit"][e]) for m in names) + " |")
    print("similar:", json.dumps(q["similar"]))
    print("groups:", q["groups"], "seconds:", q["seconds"])


if __name__ == "__main__":
    main()
