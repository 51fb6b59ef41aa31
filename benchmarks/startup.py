"""Start-up cost of whole `lookalike` processes: what a user waits for per command.

    .venv/bin/python benchmarks/startup.py [--rounds 5] [--baseline-src DIR] [--cache DIR]

An index of the shipped photos (scikit-image's, saved as JPEG) is built once; the model caches
(ONNX exports, digests) are warmed by one untimed run of every command. Then each round runs,
as separate processes (`python -m lookalike ...`, interleaved in one order per round):
`info`, `search IMAGE`, `search id:1`, `search --text WORD`, `search --text PHRASE` and
`classify IMAGE`. Wall time and the peak resident memory of each process (`wait4` rusage) are
recorded; the table gives the median wall time and its ratio to `info`'s median in the same run
(the machine is shared and noisy: ratios within one run are what count), and the largest peak
RSS seen.

`--baseline-src DIR` adds the same commands run with `PYTHONPATH=DIR` (the `src/` folder of an
older lookalike checkout, e.g. `git worktree add /tmp/before <commit>` then `/tmp/before/src`),
interleaved with ours in every round, so before and after are measured side by side. Writes
benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WORD = "cat"
PHRASE = "sunset at the beach"


def commands(index: Path, photo: Path) -> dict[str, list[str]]:
    i = ["--index", str(index)]
    return {
        "info": ["info", *i],
        "search IMAGE": ["search", str(photo), *i, "-k", "5"],
        "search id:1": ["search", "id:1", *i, "-k", "5"],
        "search --text WORD": ["search", "--text", WORD, *i, "-k", "5"],
        "search --text PHRASE": ["search", "--text", PHRASE, *i, "-k", "5"],
        "classify IMAGE": ["classify", str(photo)],
    }


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"lookalike {' '.join(args)} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def make_photos(folder: Path) -> Path:
    from lookalike.samples import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    for name, image in sample_photos().items():
        image.save(folder / f"{name}.jpg", quality=90)
    return folder / "chelsea.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline-src", type=Path, help="src/ of an older lookalike checkout")
    ap.add_argument("--cache", type=Path, help="model cache dir to reuse (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-startup-"))
    cache = args.cache or work / "cache"
    photo = make_photos(work / "photos")
    base_env = {**os.environ, "LOOKALIKE_CACHE_DIR": str(cache)}
    base_env.pop("PYTHONPATH", None)
    variants = {"lookalike": base_env}
    if args.baseline_src is not None:
        variants["baseline"] = {**base_env, "PYTHONPATH": str(args.baseline_src.resolve())}

    print(f"indexing {len(list((work / 'photos').iterdir()))} photos ...", flush=True)
    cmds_of = {}
    for name, env in variants.items():  # each version builds its own index of the same photos
        index = work / f"index-{name}"
        run(["index", str(work / "photos"), "--index", str(index)], env)
        cmds_of[name] = commands(index, photo)
    cmds = cmds_of["lookalike"]
    for name, env in variants.items():  # warm caches: exports, class embeddings
        for label, argv in cmds_of[name].items():
            t, _ = run(argv, env)
            print(f"  warm-up {name:9s} {label:22s} {t:6.1f} s", flush=True)

    times: dict[str, dict[str, list[float]]] = {v: {c: [] for c in cmds} for v in variants}
    peaks: dict[str, dict[str, float]] = {v: {c: 0.0 for c in cmds} for v in variants}
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        for label in cmds:
            for name, env in variants.items():  # interleaved: before/after back to back
                t, rss = run(cmds_of[name][label], env)
                times[name][label].append(t)
                peaks[name][label] = max(peaks[name][label], rss)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    rows = []
    for name in variants:
        info = statistics.median(times[name]["info"])
        for label in cmds:
            med = statistics.median(times[name][label])
            rows.append(
                {
                    "variant": name,
                    "command": label,
                    "median_s": round(med, 3),
                    "x_info": round(med / info, 2),
                    "peak_rss_mb": round(peaks[name][label], 1),
                    "runs_s": [round(t, 3) for t in times[name][label]],
                }
            )
    print()
    print("| variant | command | median s | x info | peak RSS MB |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | `{row['command']}` | {row['median_s']:.2f} | "
            f"{row['x_info']:.2f} | {row['peak_rss_mb']:.0f} |"
        )
    result = {
        "benchmark": "startup",
        "rounds": args.rounds,
        "word": WORD,
        "phrase": PHRASE,
        "load_avg_1min_start": round(load, 2),
        "load_avg_1min_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "baseline_src": str(args.baseline_src) if args.baseline_src else None,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
