"""Fine-tuning measured with the standard protocol: train on some groups, test on unseen ones.

Data (all real photos that installed packages ship; no downloads): scikit-image's photos and
stereo pair, scikit-learn's two sample photos, matplotlib's sample photo. No package ships a
multi-view collection large enough to train on, so "views" are made from them: each photo
gives REGIONS regions (windows of 45-60 % of each side), and each region VIEWS views, each a
perspective-like warp of a jittered quadrilateral (corners moved up to 12 % of the region),
rescaled and recoloured -- simulated viewpoint changes of real content. The stereo pair is
the one real multi-view case: its groups take two warped views of a region from the left
image and two of the same region from the right image. Photos are split in two: groups from
even-numbered photos train, groups from odd-numbered ones (and the stereo pair) test.

Also measured on a category-level set: random crops (30-60 % of each side) of the test photos,
a crop's class its photo (different parts of one scene, not identical content).

Reported: mAP (groups protocol, every image a query, itself excluded) of the base model,
the fine-tuned model without and with its supervised whitening (Lw), and training time;
then a sweep of query expansion / DBA on the base descriptors of both sets.

    .venv/bin/python benchmarks/training_unseen.py [--minutes 3] [--out /tmp/lookalike-train]

Writes benchmarks/results/training_unseen.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

RESULTS = Path(__file__).parent / "results"
REGIONS = 4
VIEWS = 4
MAX_SIDE = 320


def package_photos() -> dict[str, Image.Image]:
    """Every real photo the installed packages ship, name -> RGB image."""
    import importlib.resources as res

    from lookalike.samples import sample_photos

    photos = sample_photos()
    extra = {
        "china": ("sklearn.datasets", "images/china.jpg"),
        "flower": ("sklearn.datasets", "images/flower.jpg"),
        "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    }
    for name, (package, rel) in extra.items():
        try:
            with res.as_file(res.files(package).joinpath(rel)) as p:
                photos[name] = Image.open(p).convert("RGB")
        except (ModuleNotFoundError, FileNotFoundError):
            pass
    return photos


def warp_view(region: Image.Image, rng: np.random.Generator, side: int) -> Image.Image:
    w, h = region.size
    j = 0.12
    quad = []
    for x, y in ((0, 0), (0, h), (w, h), (w, 0)):
        quad += [x + rng.uniform(-j, j) * w, y + rng.uniform(-j, j) * h]
    out = region.transform(
        (w, h), Image.Transform.QUAD, tuple(quad), resample=Image.Resampling.BICUBIC
    )
    scale = rng.uniform(0.6, 1.0) * side / max(w, h)
    out = out.resize((max(32, int(w * scale)), max(32, int(h * scale))), Image.Resampling.BICUBIC)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.75, 1.25)))
    return ImageEnhance.Color(out).enhance(float(rng.uniform(0.75, 1.25)))


def regions(photo: Image.Image, rng: np.random.Generator, n: int):
    w, h = photo.size
    for _ in range(n):
        fw, fh = rng.uniform(0.45, 0.6, size=2)
        cw, ch = int(w * fw), int(h * fh)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        yield (x0, y0, x0 + cw, y0 + ch)


def build(root: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    photos = package_photos()
    left, right = photos.pop("motorcycle_left"), photos.pop("motorcycle_right")
    names = sorted(photos)
    split = {"train": names[0::2], "test": names[1::2]}
    for part, chosen in split.items():
        for name in chosen:
            photo = photos[name].copy()
            photo.thumbnail((640, 640))
            for r, box in enumerate(regions(photo, rng, REGIONS)):
                d = root / part / f"{name}-{r}"
                d.mkdir(parents=True, exist_ok=True)
                region = photo.crop(box)
                for v in range(VIEWS):
                    warp_view(region, rng, MAX_SIDE).save(d / f"{v}.jpg", quality=90)
    left.thumbnail((640, 640))
    right.thumbnail((640, 640))
    for r, box in enumerate(regions(left, rng, REGIONS)):
        d = root / "test" / f"stereo-{r}"
        d.mkdir(parents=True, exist_ok=True)
        for v in range(VIEWS):
            source = left if v < VIEWS // 2 else right
            warp_view(source.crop(box), rng, MAX_SIDE).save(d / f"{v}.jpg", quality=90)
    # category level: crops of the test photos, class = photo
    for name in split["test"]:
        photo = photos[name].copy()
        photo.thumbnail((640, 640))
        w, h = photo.size
        d = root / "category" / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(10):
            fw, fh = rng.uniform(0.3, 0.6, size=2)
            cw, ch = max(16, int(w * fw)), max(16, int(h * fh))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = photo.crop((x0, y0, x0 + cw, y0 + ch))
            crop.thumbnail((MAX_SIDE, MAX_SIDE))
            crop.save(d / f"{i}.jpg", quality=90)
    return {k: v for k, v in split.items()} | {"stereo_groups": REGIONS}


def evaluate_dir(root: Path, model: str | None, index_dir: Path, **post) -> dict:
    from lookalike.evaluation.datasets import load_benchmark
    from lookalike.evaluation.harness import evaluate
    from lookalike.index.manifest import validate_settings
    from lookalike.training.model_dir import resolve_model

    settings = validate_settings(**resolve_model(model), max_side=MAX_SIDE)
    result = evaluate(load_benchmark("groups", root), settings, index_path=index_dir, **post)
    s = result.summary()
    return {"map": s["map"], "top1": s["top1"], "images": s["database"]}


def without_whitening(model_dir: Path, out: Path) -> Path:
    """A copy of a trained model folder without its Lw (to measure the two separately)."""
    shutil.copytree(model_dir, out)
    (out / "whitening.npz").unlink(missing_ok=True)
    meta = json.loads((out / "model.json").read_text())
    meta["whitening"] = False
    (out / "model.json").write_text(json.dumps(meta))
    return out


def main() -> None:
    from lookalike.training import train

    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lookalike-train-bench"))
    parser.add_argument("--loss", default="contrastive")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = args.out / "data"
    split = build(data, args.seed)
    counts = {
        part: sum(1 for _ in (data / part).rglob("*.jpg")) for part in ("train", "test", "category")
    }
    print(f"train photos {split['train']}\ntest photos {split['test']} + stereo pair")
    print(f"images: {counts}")

    start = time.perf_counter()
    report = train(
        data / "train",
        args.out / "model",
        minutes=args.minutes,
        max_side=MAX_SIDE,
        loss=args.loss,
        lr=args.lr,
        seed=args.seed,
    )
    train_seconds = time.perf_counter() - start
    plain = without_whitening(args.out / "model", args.out / "model-no-lw")
    models = {"base lite0": None, "fine-tuned": str(plain)}
    if report.whitening.get("use"):
        models["fine-tuned + Lw"] = str(args.out / "model")
    rows = []
    for label, model in models.items():
        row = {"model": label}
        for part in ("test", "category"):
            idx = args.out / "idx" / f"{part}-{label.replace(' ', '_')}"
            row[part] = evaluate_dir(data / part, model, idx)
        rows.append(row)
        print(
            f"{label:18s} unseen groups mAP {row['test']['map']:.4f}  "
            f"category mAP {row['category']['map']:.4f}"
        )

    sweep = []
    options = [
        {},
        {"expand": "aqe:n=1"},
        {"expand": "aqe:n=2"},
        {"expand": "alpha-qe:n=2,alpha=3"},
        {"dba": "aqe:n=1"},
        {"dba": "alpha-qe:n=2,alpha=3"},
        {"dba": "aqe:n=1", "expand": "aqe:n=2"},
        {"dba": "alpha-qe:n=2,alpha=3", "expand": "alpha-qe:n=2,alpha=3"},
    ]
    for post in options:
        row = {"post": post or "none"}
        for part in ("test", "category"):
            idx = args.out / "idx" / f"{part}-base_lite0"
            row[part] = evaluate_dir(data / part, None, idx, **post)["map"]
        sweep.append(row)
        print(
            f"{json.dumps(post) if post else 'none':60s} test {row['test']:.4f}  "
            f"category {row['category']:.4f}"
        )

    out = {
        "split": split,
        "images": counts,
        "max_side": MAX_SIDE,
        "minutes": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "train_report": report.to_dict(),
        "models": rows,
        "postprocessing_sweep": sweep,
        "note": "one run on a shared 2-core machine; training time depends on its load",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "training_unseen.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"training took {train_seconds:.0f} s; wrote {RESULTS / 'training_unseen.json'}")


if __name__ == "__main__":
    main()
