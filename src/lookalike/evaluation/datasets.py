"""Benchmarks in their standard layouts, all loaded into one shape.

Like FAISS ``contrib/datasets.py``, every kind gives a :class:`Benchmark` with the same verbs:
``get_database()`` (image paths), ``get_queries()`` (:class:`Query`: a path, an optional box,
and the database index when the query is itself a database image) and
``get_groundtruth(protocol)`` (per query, the positive and junk database indices).

Kinds (``load_benchmark(kind, root)``):
- ``ukbench``: ``ukbenchNNNNN.jpg``; every 4 consecutive numbers are one object; every image is
  a query and stays in its own ranking (the N-S score counts it). Groups must be complete.
- ``holidays``: INRIA Holidays ``NNNNNN.jpg``; a group per ``id // 100``; the first image of
  each group is its query, excluded from its own ranking.
- ``oxford5k`` / ``paris6k``: original protocol: ``*_query.txt`` / ``_good`` / ``_ok`` /
  ``_junk`` files anywhere under ROOT; good+ok are positives, junk is ignored, the query is
  the box of its image.
- ``roxford5k`` / ``rparis6k``: revisited protocol from ``gnd_<name>.pkl`` (the
  ``imlist``/``qimlist``/``gnd`` layout of the revisitop code); images ``jpg/<name>.jpg``
  (or anywhere under ROOT); protocols easy / medium / hard.
- ``groups``: one subfolder per group of matching images; every image is a query, excluded
  from its own ranking.
- ``copydays``: copy detection as in INRIA Copydays: ``original/`` holds the database; every
  other image under ROOT is a query (an edited copy) whose original is the database image
  with the same ``int(stem) // 100``. ``lookalike make-benchmark --layout copydays`` writes it.

``Benchmark.with_distractors(paths)`` appends images that match no query to the database.
"""

from __future__ import annotations

import pickle
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lookalike.errors import ConfigError
from lookalike.evaluation.metrics import APStyle
from lookalike.images import iter_image_files

KINDS = (
    "ukbench",
    "holidays",
    "oxford5k",
    "paris6k",
    "roxford5k",
    "rparis6k",
    "groups",
    "copydays",
)
DEFAULT_PROTOCOL = "all"
REVISITED_PROTOCOLS = ("easy", "medium", "hard")


@dataclass(frozen=True, slots=True)
class Query:
    path: Path
    box: tuple[float, float, float, float] | None = None
    db_index: int | None = None  # set when the query is this database image


@dataclass(frozen=True, slots=True)
class GroundTruth:
    positives: frozenset[int]
    junk: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Benchmark:
    """Database, queries and ground truth of one benchmark, in one shape for every kind."""

    kind: str
    root: Path
    database: tuple[Path, ...]
    queries: tuple[Query, ...]
    groundtruth: dict[str, tuple[GroundTruth, ...]]  # protocol -> one per query
    ap_style: APStyle = "step"
    query_in_ranking: bool = False  # ukbench: the query is ranked with the rest
    distractors: int = 0
    notes: dict = field(default_factory=dict)

    def get_database(self) -> list[Path]:
        return list(self.database)

    def get_queries(self) -> list[Query]:
        return list(self.queries)

    def get_groundtruth(self, protocol: str = DEFAULT_PROTOCOL) -> list[GroundTruth]:
        try:
            return list(self.groundtruth[protocol])
        except KeyError:
            raise ConfigError(
                f"{self.kind} has no protocol {protocol!r}; it has {', '.join(self.groundtruth)}"
            ) from None

    @property
    def protocols(self) -> list[str]:
        return list(self.groundtruth)

    def with_distractors(self, paths: Iterable[str | Path]) -> Benchmark:
        """This benchmark with extra database images that are positive for no query."""
        known = set(self.database)
        extra = tuple(p for p in (Path(x).absolute() for x in paths) if p not in known)
        return replace(
            self, database=self.database + extra, distractors=self.distractors + len(extra)
        )


def load_benchmark(kind: str, root: str | Path) -> Benchmark:
    """Load the benchmark of ``kind`` from ``root`` (see the module docstring)."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError(f"{root}: benchmark folder not found")
    loaders = {
        "ukbench": load_ukbench,
        "holidays": load_holidays,
        "oxford5k": load_oxford,
        "paris6k": load_oxford,
        "roxford5k": lambda r: load_revisited(r, "roxford5k"),
        "rparis6k": lambda r: load_revisited(r, "rparis6k"),
        "groups": load_groups,
        "copydays": load_copydays,
    }
    if kind not in loaders:
        raise ConfigError(f"unknown benchmark kind {kind!r}; choose one of {', '.join(KINDS)}")
    bench = loaders[kind](root)
    if kind in ("oxford5k", "paris6k"):
        bench = replace(bench, kind=kind)
    if not bench.queries:
        raise ConfigError(f"{root}: no queries found for a {kind} benchmark")
    return bench


def _images(root: Path) -> list[Path]:
    return [p.absolute() for p in iter_image_files(root)]


def _numbered(root: Path, pattern: str, kind: str) -> list[tuple[int, Path]]:
    rx = re.compile(pattern, re.IGNORECASE)
    found = []
    for p in _images(root):
        m = rx.fullmatch(p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        raise ConfigError(f"{root}: no {kind} images (named like {pattern}) found")
    found.sort()
    return found


def load_ukbench(root: Path) -> Benchmark:
    found = _numbered(root, r"ukbench(\d+)\.jpe?g", "ukbench")
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (num, _) in enumerate(found):
        groups[num // 4].append(i)
    incomplete = [g for g, members in groups.items() if len(members) != 4]
    if incomplete:
        g = incomplete[0]
        raise ConfigError(
            f"{root}: ukbench group {g} (ukbench{4 * g:05d}..{4 * g + 3:05d}) has "
            f"{len(groups[g])} images, expected 4 ({len(incomplete)} incomplete groups)"
        )
    database = tuple(p for _, p in found)
    queries = tuple(Query(p, None, i) for i, p in enumerate(database))
    gt = tuple(GroundTruth(frozenset(groups[num // 4])) for num, _ in found)
    return Benchmark(
        "ukbench",
        root,
        database,
        queries,
        {DEFAULT_PROTOCOL: gt},
        ap_style="step",
        query_in_ranking=True,
    )


def load_holidays(root: Path) -> Benchmark:
    found = _numbered(root, r"(\d{6})\.jpe?g", "holidays")
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (num, _) in enumerate(found):
        groups[num // 100].append(i)
    database = tuple(p for _, p in found)
    queries, gt = [], []
    for members in groups.values():
        q = members[0]
        queries.append(Query(database[q], None, q))
        gt.append(GroundTruth(frozenset(members[1:]), frozenset({q})))
    return Benchmark(
        "holidays",
        root,
        database,
        tuple(queries),
        {DEFAULT_PROTOCOL: tuple(gt)},
        ap_style="trapezoid",
    )


def _read_names(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def load_oxford(root: Path) -> Benchmark:
    query_files = sorted(root.rglob("*_query.txt"))
    if not query_files:
        raise ConfigError(f"{root}: no ground-truth files (*_query.txt) found")
    database = tuple(sorted(_images(root), key=lambda p: p.name))
    by_stem = {p.stem: i for i, p in enumerate(database)}
    queries, gt = [], []
    for qf in query_files:
        base = str(qf)[: -len("_query.txt")]
        fields = qf.read_text().split()
        if len(fields) != 5:
            raise ConfigError(f"{qf}: expected 'name x0 y0 x1 y1', got {' '.join(fields)!r}")
        name = re.sub(r"^oxc1_", "", fields[0])
        if name not in by_stem:
            raise ConfigError(f"{qf}: query image {name!r} not found under {root}")
        try:
            box = tuple(float(v) for v in fields[1:])
        except ValueError:
            raise ConfigError(f"{qf}: bad box {fields[1:]!r}") from None
        lists = {}
        for part in ("good", "ok", "junk"):
            f = Path(f"{base}_{part}.txt")
            if not f.is_file():
                raise ConfigError(f"{f}: ground-truth file missing")
            missing = [n for n in _read_names(f) if n not in by_stem]
            if missing:
                raise ConfigError(f"{f}: image {missing[0]!r} not found under {root}")
            lists[part] = frozenset(by_stem[n] for n in _read_names(f))
        queries.append(Query(database[by_stem[name]], box, None))  # type: ignore[arg-type]
        gt.append(GroundTruth(lists["good"] | lists["ok"], lists["junk"]))
    return Benchmark(
        "oxford5k",
        root,
        database,
        tuple(queries),
        {DEFAULT_PROTOCOL: tuple(gt)},
        ap_style="trapezoid",
    )


def load_revisited(root: Path, name: str) -> Benchmark:
    candidates = sorted(root.rglob(f"gnd_{name}.pkl"))
    if not candidates:
        raise ConfigError(f"{root}: ground-truth file gnd_{name}.pkl not found")
    gnd_file = candidates[0]
    try:
        # The revisited benchmarks ship their ground truth as a pickle; only open files you trust.
        with open(gnd_file, "rb") as fh:
            cfg = pickle.load(fh)
        imlist, qimlist, gnd = cfg["imlist"], cfg["qimlist"], cfg["gnd"]
    except (OSError, pickle.UnpicklingError, KeyError, TypeError, EOFError) as exc:
        raise ConfigError(f"{gnd_file}: not a revisited ground-truth file ({exc})") from exc
    if len(gnd) != len(qimlist):
        raise ConfigError(f"{gnd_file}: {len(qimlist)} queries but {len(gnd)} gnd entries")
    files = {p.stem: p for p in _images(root)}

    def path_of(n: str) -> Path:
        if n not in files:
            raise ConfigError(f"{root}: image {n!r} of {gnd_file.name} not found (jpg/{n}.jpg)")
        return files[n]

    database = tuple(path_of(n) for n in imlist)
    queries, proto = [], {p: [] for p in REVISITED_PROTOCOLS}
    for qname, g in zip(qimlist, gnd, strict=True):
        bbx = g.get("bbx")
        box = tuple(float(v) for v in bbx) if bbx is not None and len(bbx) == 4 else None
        queries.append(Query(path_of(qname), box, None))  # type: ignore[arg-type]
        easy, hard, junk = (
            frozenset(int(i) for i in g.get(k, ())) for k in ("easy", "hard", "junk")
        )
        proto["easy"].append(GroundTruth(easy, junk | hard))
        proto["medium"].append(GroundTruth(easy | hard, junk))
        proto["hard"].append(GroundTruth(hard, junk | easy))
    return Benchmark(
        name,
        root,
        database,
        tuple(queries),
        {p: tuple(v) for p, v in proto.items()},
        ap_style="trapezoid",
    )


def load_groups(root: Path) -> Benchmark:
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    database: list[Path] = []
    members: list[list[int]] = []
    for d in folders:
        paths = _images(d)
        if paths:
            members.append(list(range(len(database), len(database) + len(paths))))
            database.extend(paths)
    if not database:
        raise ConfigError(f"{root}: no group subfolders with images (one folder per group)")
    queries, gt = [], []
    for group in members:
        for i in group:
            queries.append(Query(database[i], None, i))
            gt.append(GroundTruth(frozenset(group) - {i}, frozenset({i})))
    return Benchmark(
        "groups",
        root,
        tuple(database),
        tuple(queries),
        {DEFAULT_PROTOCOL: tuple(gt)},
        ap_style="step",
    )


def load_copydays(root: Path) -> Benchmark:
    originals = root / "original"
    if not originals.is_dir():
        raise ConfigError(f"{root}: copydays layout needs an 'original' folder")

    def key(p: Path) -> int:
        try:
            return int(p.stem) // 100
        except ValueError:
            raise ConfigError(
                f"{p}: copydays images must be named by number (NNNNNN.jpg)"
            ) from None

    database = tuple(_images(originals))
    by_key: dict[int, set[int]] = defaultdict(set)
    for i, p in enumerate(database):
        by_key[key(p)].add(i)
    queries, gt = [], []
    for p in _images(root):
        if originals in p.parents:
            continue
        queries.append(Query(p, None, None))
        gt.append(GroundTruth(frozenset(by_key.get(key(p), ()))))
    return Benchmark(
        "copydays", root, database, tuple(queries), {DEFAULT_PROTOCOL: tuple(gt)}, ap_style="step"
    )


def distractor_paths(root: str | Path) -> list[Path]:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{root}: distractor folder not found")
    return _images(root)
