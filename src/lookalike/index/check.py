"""`lookalike check`: is an index directory sound? SQLite's own integrity check of the catalog,
plus the manifest, the lock file, and whether the derived files (FAISS index, whitening) are
this index's own and current. Reads only; never repairs (derived files repair themselves on the
next use; a damaged catalog needs the way out README describes)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.errors import LookalikeError
from lookalike.index.manifest import MANIFEST_NAME, read_manifest
from lookalike.index.store import CATALOG_NAME, LOCK_NAME, VECTORS_NAME, is_index
from lookalike.index.vectors import read_stamp

MAX_MESSAGES = 20


@dataclass(slots=True)
class CheckReport:
    """`problems`: what is damaged and needs the user; `notes`: what lookalike repairs itself."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "ok": self.ok,
            "images": self.images,
            "problems": list(self.problems),
            "notes": list(self.notes),
        }


def check_index(path: str | Path) -> CheckReport:
    """Check the index at `path` without changing anything."""
    path = Path(path).expanduser().absolute()
    report = CheckReport(str(path))
    if not is_index(path):
        report.problems.append(f"{path / MANIFEST_NAME}: missing: not a lookalike index")
        return report
    manifest = None
    try:
        manifest = read_manifest(path)
    except LookalikeError as exc:
        report.problems.append(str(exc))
    lock = path / LOCK_NAME
    if os.path.lexists(lock) and not lock.is_file():
        report.problems.append(f"{lock}: not a regular file (remove it when no writer runs)")
    generation = _check_catalog(path / CATALOG_NAME, report)
    if manifest is not None and generation is not None:
        _check_vectors(path, manifest, generation, report)
    return report


def _check_catalog(file: Path, report: CheckReport) -> int | None:
    """SQLite's integrity check, then the tables lookalike needs. Returns the generation."""
    if not file.is_file():
        report.problems.append(f"{file}: missing")
        return None
    try:
        db = sqlite3.connect(f"file:{file.as_posix()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.problems.append(f"{file}: cannot be opened ({exc})")
        return None
    try:
        rows = db.execute(f"PRAGMA integrity_check({MAX_MESSAGES})").fetchall()
        messages = [r[0] for r in rows if r[0] != "ok"]
        if messages:
            report.problems.append(
                f"{file}: SQLite integrity check failed: " + "; ".join(messages[:MAX_MESSAGES])
            )
            return None
        report.images = int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{file}: cannot be read ({exc})")
        return None
    finally:
        db.close()


def _check_vectors(path: Path, manifest, generation: int, report: CheckReport) -> None:  # noqa: ANN001
    file = path / VECTORS_NAME
    if not file.exists():
        if report.images:
            report.notes.append(f"{file}: missing (rebuilt from the catalog on the next search)")
        return
    if manifest.index_generation != generation:
        report.notes.append(
            f"{file}: reflects catalog generation {manifest.index_generation}, the catalog is "
            f"at {generation} (rebuilt on the next search)"
        )
        return
    if manifest.index_id is not None:
        stamp = read_stamp(file)
        wanted = f"{manifest.index_id}:{generation}"
        if stamp != wanted:
            report.notes.append(
                f"{file}: not this index's own file (stamp {stamp or 'missing'}, expected "
                f"{wanted}); it is ignored and rebuilt on the next search"
            )
    if manifest.whitening is not None and not (path / manifest.whitening.file).is_file():
        report.problems.append(
            f"{path / manifest.whitening.file}: missing (run 'lookalike index' to learn it again)"
        )
