"""Text search by phrases: precision@10 before and after phrase matching, on shipped photos.

    .venv/bin/python benchmarks/text_phrases.py [--variants 10]

The labelled set: every shipped photo with a nameable subject (scikit-image's: the cat, the
coffee, the astronaut, the cameraman, the motorcycle pair, the rocket, the clock, the coins, the
page, the brick wall, the gravel, the grass, the moon) in `--variants` random views each
(crops of 60-100 %, flips, colour shifts; JPEG), labelled by subject, indexed with lookalike's
defaults. Each query is a phrase a user might type, with the subjects that answer it.

- before: the matcher as it was at `--before-rev` (lookalike/text.py from git: WordNet on the
  whole query, else the sentence model on the whole query: the classes within 0.08 of the best
  cosine if the best reaches 0.40, else none), its sentence model swapped for today's ONNX one;
- after: `TextMatcher.match` (margin 0.10, the phrase's WordNet words added, parts matched on
  their own when the whole phrase matches nothing, people words, irregular plurals).

Both rank with the same index (`Catalog.search_labels`, the probability mass on the matched
classes) and the same sentence embeddings (the ONNX model), so only the matching differs.
precision@10 = relevant among the top 10 / 10 (a query with fewer than 10 relevant images has a
lower ceiling, given in the table). Writes benchmarks/results/text_phrases.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results"

SUBJECTS = {
    "chelsea": "cat",
    "coffee": "coffee",
    "astronaut": "person",
    "camera": "person",
    "motorcycle_left": "motorcycle",
    "motorcycle_right": "motorcycle",
    "rocket": "rocket",
    "clock": "clock",
    "coins": "coins",
    "page": "text",
    "text": "text",
    "brick": "wall",
    "gravel": "gravel",
    "grass": "grass",
    "moon": "moon",
}

QUERIES = {
    "a cat lying on a blanket": {"cat"},
    "kittens": {"cat"},
    "a cup of coffee": {"coffee"},
    "coffee on a saucer": {"coffee"},
    "people": {"person"},
    "a woman in a space suit": {"person"},
    "a man holding a camera": {"person"},
    "a motorbike parked outside": {"motorcycle"},
    "motorcycles": {"motorcycle"},
    "a rocket on the launch pad": {"rocket"},
    "a clock on the wall": {"clock"},
    "a pile of old coins": {"coins"},
    "a page of printed text": {"text"},
    "a red brick wall": {"wall"},
    "the moon at night": {"moon"},
}


def make_set(folder: Path, variants: int, seed: int = 0) -> dict[str, str]:
    """path -> subject."""
    from lookalike.samples import sample_photos

    rng = np.random.default_rng(seed)
    photos = sample_photos()
    out = {}
    for name, subject in SUBJECTS.items():
        src = photos[name].convert("RGB")
        w, h = src.size
        for v in range(variants):
            s = rng.uniform(0.6, 1.0) if v else 1.0
            cw, ch = int(w * s), int(h * s)
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            im = src.crop((x0, y0, x0 + cw, y0 + ch))
            arr = np.asarray(im).astype(np.int16) + (rng.integers(-15, 16, size=3) if v else 0)
            im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
            if v % 2:
                im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            path = folder / f"{name}-{v:02d}.jpg"
            im.save(path, quality=90)
            out[str(path)] = subject
    return out


def load_before(rev: str):
    """lookalike/text.py as it was at git revision `rev`, as a module, its sentence model
    replaced by today's ONNX one (equal to sentence-transformers to ~1e-7) so that only the
    matching differs."""
    import importlib.util
    import subprocess

    from lookalike.text import default_matcher

    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:src/lookalike/text.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = importlib.util.spec_from_loader("lookalike_text_before", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:text.py", "exec"), module.__dict__)
    old = module.TextMatcher()
    ours = default_matcher()
    old.embed = ours.embed
    old._class_emb = ours.class_embeddings
    return module, old


def before_weights(before, text: str) -> dict[int, float]:
    module, old = before
    return {m.class_id: m.weight for m in old.classes(text)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", type=int, default=10)
    ap.add_argument(
        "--before-rev", default="08d89bc", help="git revision of the matcher to compare with"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "text_phrases.json")
    args = ap.parse_args()

    from lookalike.engine import Index
    from lookalike.text import default_matcher

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-phrases-"))
    (tmp / "photos").mkdir()
    subjects = make_set(tmp / "photos", args.variants)
    matcher = default_matcher()
    before = load_before(args.before_rev)
    rows = []
    with Index.create(tmp / "idx") as idx:
        idx.sync([tmp / "photos"])
        for text, wanted in QUERIES.items():
            relevant = sum(1 for s in subjects.values() if s in wanted)
            row = {"query": text, "relevant": relevant, "ceiling": min(relevant, 10) / 10}
            for name, weights in (
                ("before", before_weights(before, text)),
                ("after", matcher.match(text).weights()),
            ):
                pairs = idx.catalog.search_labels(weights, 10) if weights else []
                paths = idx.catalog.paths_and_labels([i for i, _ in pairs])
                top = [paths[i][0] for i, _ in pairs if i in paths]
                row[name] = sum(1 for p in top if subjects[p] in wanted) / 10
                row[f"{name}_returned"] = len(top)
            row["matched"] = matcher.match(text).explain()
            rows.append(row)
    mean_before = float(np.mean([r["before"] for r in rows]))
    mean_after = float(np.mean([r["after"] for r in rows]))
    print("| query | relevant | P@10 before | P@10 after | ceiling |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['query']} | {r['relevant']} | {r['before']:.1f}"
            f"{' (none returned)' if not r['before_returned'] else ''} | {r['after']:.1f} | "
            f"{r['ceiling']:.1f} |"
        )
    print(f"| **mean** | | **{mean_before:.2f}** | **{mean_after:.2f}** | |")
    for r in rows:
        print(f"- {r['matched']}")
    result = {
        "benchmark": "text_phrases",
        "variants": args.variants,
        "before_rev": args.before_rev,
        "images": len(subjects),
        "mean_p10_before": round(mean_before, 3),
        "mean_p10_after": round(mean_after, 3),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
