"""Write an evaluation as a report folder: a Markdown table, a precision-recall plot, a
rank-of-first-correct-answer plot (PNG, matplotlib) and an HTML page showing sample queries
with their top results marked right or wrong.

matplotlib is an optional dependency (``pip install 'lookalike[report]'``); without it the
plots are skipped and the Markdown/HTML still written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.errors import ConfigError
from lookalike.evaluation.harness import EvalResult

SAMPLE_QUERIES = 12
SHOWN_RESULTS = 8
THUMB = 128


def markdown_table(result: EvalResult) -> str:
    s = result.summary()
    rows = [("benchmark", s["kind"])]
    if "ns_score" in s:
        rows.append(("N-S score (max 4)", s["ns_score"]))
    if "map_medium" in s:
        for proto in ("easy", "medium", "hard"):
            rows.append((f"mAP {proto}", s.get(f"map_{proto}")))
            rows.append((f"mP@10 {proto}", s.get(f"mp@10_{proto}")))
    else:
        rows.append(("mAP", s["map"]))
    rows += [
        ("top-1 accuracy", s["top1"]),
        ("queries", s["queries"]),
        ("database images", s["database"]),
        ("distractors", s["distractors"]),
        ("seconds", s["seconds"]),
        ("settings", json.dumps(s["settings"])),
        ("whitening", json.dumps(s["whitening"])),
        ("query expansion", s["expand"] or "none"),
        ("DBA", s["dba"] or "none"),
        ("re-ranked top", s["rerank"] or "none"),
    ]
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _plots(result: EvalResult, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    recall, precision = result.pr_curve
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision)
    ax.set(xlabel="recall", ylabel="interpolated precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"{result.kind}: mean precision-recall (mAP {result.map:.3f})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png", dpi=100)
    plt.close(fig)
    written.append("precision_recall.png")

    firsts = [q.first_correct for q in result.queries if q.positives]
    never = sum(1 for f in firsts if f is None)
    ranks = np.array([f for f in firsts if f is not None])
    fig, ax = plt.subplots(figsize=(5, 4))
    if ranks.size:
        top = int(min(max(ranks.max(), 10), 50))
        counts = np.bincount(np.minimum(ranks, top + 1), minlength=top + 2)[1:]
        labels = [str(i) for i in range(1, top + 1)] + [f">{top}"]
        ax.bar(range(len(counts)), counts)
        step = max(1, len(labels) // 10)
        ax.set_xticks(range(0, len(labels), step), labels[::step])
    ax.set(xlabel="rank of the first correct result", ylabel="queries")
    ax.set_title(f"first correct answer ({never} queries: none ranked)")
    fig.tight_layout()
    fig.savefig(out / "first_correct_rank.png", dpi=100)
    plt.close(fig)
    written.append("first_correct_rank.png")
    return written


def _thumb(path: str, box=None) -> str:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if box is not None:
                im = im.crop(tuple(int(round(v)) for v in box))
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:  # a thumbnail must not stop the report
        return ""


def _html(result: EvalResult, table: str, plots: list[str], sample: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    n = len(result.queries)
    chosen = sorted(rng.choice(n, size=min(sample, n), replace=False).tolist()) if n else []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lookalike eval: {html.escape(result.kind)}</title>",
        "<style>body{font-family:sans-serif;margin:1em}"
        "td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}"
        ".row{display:flex;gap:6px;margin:8px 0;align-items:flex-start}"
        ".cell{text-align:center;font-size:11px;width:136px;word-break:break-all}"
        ".cell img{border:4px solid #999;max-width:128px}"
        ".ok img{border-color:#2a2}.bad img{border-color:#d22}.q img{border-color:#36c}"
        "</style></head><body>",
        f"<h1>lookalike eval: {html.escape(result.kind)}</h1><table>",
    ]
    for line in table.strip().splitlines()[2:]:
        cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    for p in plots:
        parts.append(f"<img src='{p}' alt='{p}'>")
    parts.append(
        f"<h2>{len(chosen)} sample queries</h2><p>Blue: the query; green: a correct result; "
        "red: a wrong one.</p>"
    )
    for i in chosen:
        q = result.queries[i]
        ap = ", ".join(f"{k} {v:.3f}" for k, v in q.ap.items() if not math.isnan(v))
        parts.append("<div class='row'>")
        parts.append(
            f"<div class='cell q'><img src='{_thumb(q.query, q.box)}'><br>"
            f"{html.escape(Path(q.query).name)}<br>AP {html.escape(ap)}</div>"
        )
        for rank, j in enumerate(q.top[:SHOWN_RESULTS], 1):
            path = result.database[j]
            cls = "ok" if j in q.positives else "bad"
            mark = "right" if cls == "ok" else "wrong"
            parts.append(
                f"<div class='cell {cls}'><img src='{_thumb(path)}' alt='{mark}'><br>"
                f"{rank}. {html.escape(Path(path).name)} ({mark})</div>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    result: EvalResult, out: str | Path, *, sample: int = SAMPLE_QUERIES, seed: int = 0
) -> dict[str, str]:
    """Write README.md, results.json, the plots and index.html into ``out``; returns name ->
    path of what was written."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: report folder is a file")
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(result)
    plots = _plots(result, out)
    md = [f"# lookalike eval: {result.kind}\n", table]
    md += [f"\n![{p}]({p})\n" for p in plots]
    if not plots:
        md.append("\n(plots skipped: install matplotlib, `pip install 'lookalike[report]'`)\n")
    md.append("\nSample queries with their top results: [index.html](index.html)\n")
    (out / "README.md").write_text("".join(md), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(result.summary(), indent=2), encoding="utf-8")
    (out / "index.html").write_text(_html(result, table, plots, sample, seed), encoding="utf-8")
    written = {"markdown": "README.md", "json": "results.json", "html": "index.html"}
    written.update({p.split(".")[0]: p for p in plots})
    return {k: str(out / v) for k, v in written.items()}
