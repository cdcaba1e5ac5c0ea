"""The run history: one row per run in an SQLite file, written as the run goes.

A row is inserted as `unfinished` when the run starts, updated at each checkpoint, and closed
(`finished`, `interrupted` or `failed`) with the verdict at the end, so a run killed outright
stays visible as `unfinished`, pointing at its run directory. Several processes may write the
same file at once: every write is one short `BEGIN IMMEDIATE` transaction on its own
connection, and SQLite's lock (waited for up to `LOCK_TIMEOUT_S`) serialises them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memsoak.errors import MemsoakError

SCHEMA_VERSION = 1
LOCK_TIMEOUT_S = 30.0
TOP_SUSPECTS = 5
STATUSES = ("unfinished", "finished", "interrupted", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL,
    scenario TEXT NOT NULL,
    target TEXT NOT NULL,
    revision TEXT NOT NULL DEFAULT '',
    run_dir TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT '',
    verdict TEXT,
    measured_requests INTEGER NOT NULL DEFAULT 0,
    bytes_per_request REAL,
    rss_bytes_per_request REAL,
    suspects TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_by_scenario ON runs (scenario, id);
"""

_COLUMNS = (
    "id, started_at, updated_at, status, scenario, target, revision, run_dir, plan, verdict, "
    "measured_requests, bytes_per_request, rss_bytes_per_request, suspects"
)


class HistoryError(MemsoakError):
    pass


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    started_at: float
    updated_at: float
    status: str
    scenario: str
    target: str
    revision: str
    run_dir: str
    plan: str  # "10000 requests" or "8h" (what was asked for)
    verdict: str | None
    measured_requests: int
    bytes_per_request: float | None  # traced (tracemalloc) bytes per measured request
    rss_bytes_per_request: float | None
    suspects: list[dict[str, Any]] = field(default_factory=list)  # top suspects, most first

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRecord:
        (run_id, started, updated, status, scenario, target, revision, run_dir, plan, verdict, measured,
         bytes_per_request, rss_per_request, suspects) = row  # fmt: skip
        try:
            parsed = json.loads(suspects)
        except ValueError:
            parsed = []
        kept = parsed if isinstance(parsed, list) else []
        return cls(run_id, started, updated, status, scenario, target, revision, run_dir, plan, verdict,
                   measured, bytes_per_request, rss_per_request, kept)  # fmt: skip


class History:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HistoryError(f"cannot create history {self.path}: {exc.strerror or exc}") from None
        elif not self.path.is_file():
            raise HistoryError(f"no run history at {self.path} (set it with --history)")
        try:
            # isolation_level=None: transactions are ours, begun explicitly below.
            connection = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open history {self.path}: {exc}") from None
        try:
            # IMMEDIATE takes the write lock up front, so two writers queue instead of both
            # reading and one failing to upgrade its lock half-way.
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            if write:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise HistoryError(f"history {self.path}: {exc}") from None
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def check(self) -> None:
        """Create the file if needed and prove it is a writable history, before a run starts."""
        with self._transaction(write=True):
            pass

    def start(self, *, scenario: str, target: str, revision: str, run_dir: str, plan: str) -> int:
        now = time.time()
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, updated_at, status, scenario, target, revision, run_dir, plan)"
                " VALUES (?, ?, 'unfinished', ?, ?, ?, ?, ?)",
                (now, now, scenario, target, revision, run_dir, plan),
            )
            return int(cursor.lastrowid or 0)

    def progress(
        self, run_id: int, *, measured: int, bytes_per_request: float, rss_per_request: float
    ) -> None:
        """A checkpoint's numbers, so an unfinished run shows how far it got."""
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE runs SET updated_at = ?, measured_requests = ?, bytes_per_request = ?,"
                " rss_bytes_per_request = ? WHERE id = ? AND status = 'unfinished'",
                (time.time(), measured, bytes_per_request, rss_per_request, run_id),
            )

    def finish(
        self,
        run_id: int,
        *,
        status: str,
        verdict: str,
        measured: int,
        bytes_per_request: float,
        rss_per_request: float,
        suspects: Sequence[dict[str, Any]],
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._transaction(write=True) as db:
            db.execute(
                "UPDATE runs SET updated_at = ?, status = ?, verdict = ?, measured_requests = ?,"
                " bytes_per_request = ?, rss_bytes_per_request = ?, suspects = ? WHERE id = ?",
                (
                    time.time(),
                    status,
                    verdict,
                    measured,
                    bytes_per_request,
                    rss_per_request,
                    json.dumps(list(suspects)[:TOP_SUSPECTS]),
                    run_id,
                ),
            )

    def runs(self, scenario: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs oldest first (the last `limit` of them)."""
        where, params = ("WHERE scenario = ?", [scenario]) if scenario else ("", [])
        query = f"SELECT {_COLUMNS} FROM runs {where} ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._transaction(write=False) as db:
            rows = db.execute(query, params).fetchall()
        return [RunRecord.from_row(row) for row in reversed(rows)]

    def get(self, run_id: int) -> RunRecord:
        with self._transaction(write=False) as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise HistoryError(f"no run {run_id} in {self.path}")
        return RunRecord.from_row(row)

    def previous_finished(self, scenario: str, before_id: int, limit: int) -> list[RunRecord]:
        """The last `limit` finished runs of `scenario` recorded before run `before_id`, oldest first."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE scenario = ? AND id < ? AND status = 'finished'"
                " AND bytes_per_request IS NOT NULL ORDER BY id DESC LIMIT ?",
                (scenario, before_id, limit),
            ).fetchall()
        return [RunRecord.from_row(row) for row in reversed(rows)]


def suspect_summaries(suspects: Sequence[Any]) -> list[dict[str, Any]]:
    """The few fields of `analysis.report.Suspect` a history row keeps."""
    return [
        {
            "file": s.file,
            "line": s.line,
            "code": s.code,
            "bytes_per_request": round(s.bytes_per_request, 1),
            "size_diff": s.size_diff,
            "steady": s.steady,
        }
        for s in list(suspects)[:TOP_SUSPECTS]
    ]
