"""series.csv: the memory time series of a run, for a spreadsheet or a plotting script.

One row per reading, in request order: the cheap samples taken while the load ran, and the
checkpoints (snapshots). Checkpoints carry no elapsed time of their own (the target's clock is
not the harness's), so that cell is empty for them rather than a guess.
"""

from __future__ import annotations

import csv
from typing import TextIO

from analysis.report import Report

FORMAT = "csv"
FILENAME = "series.csv"
COLUMNS = ("kind", "requests", "elapsed_s", "rss_bytes", "traced_bytes")


def render(report: Report, file: TextIO) -> None:
    rows: list[tuple[int, int, tuple[object, ...]]] = []
    for c in report.checkpoints:
        rows.append((c.requests, 0, ("checkpoint", c.requests, "", c.rss_bytes, c.traced_bytes)))
    for s in report.samples:
        elapsed = f"{s.elapsed_s:.3f}"
        rows.append((s.requests, 1, ("sample", s.requests, elapsed, s.rss_bytes, s.traced_bytes)))
    # A stable sort on requests keeps samples in time order and puts a checkpoint before the
    # samples taken at the same count (it was taken first: the gate held the load for it).
    rows.sort(key=lambda row: (row[0], row[1]))
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(COLUMNS)
    for _, _, row in rows:
        writer.writerow(row)
