"""The run's snapshots, held in the Locust process with bounded memory.

A parsed snapshot with all its sites is about a megabyte; a soak keeping every one grew without
bound. Every snapshot's figures (requests, RSS, traced bytes, pause, workers) stay in memory, as
everything during a run reads them, but the sites only of the first and the latest: a diff is
always baseline -> now. The only reader of the sites in between is the suspects' growth series
(`analysis.suspects.find_suspects`), and it reads them only for the sites that grew from the
first to the last snapshot. So for analysis the snapshots in between are read back from the
files already written to the run directory, cut down to those sites, and the cut-down sites kept:
the next checkpoint usually asks for the same sites and reads no file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from analysis.diff import grown_sites
from analysis.model import SiteStat, Snapshot, Traceback
from analysis.snapshot_io import SnapshotFormatError, loads_snapshot

# Held with all their sites: the first and the latest.
FULL_SNAPSHOTS = 2


class SnapshotStore:
    def __init__(self, snapshots: list[Snapshot]) -> None:
        # The run's own list (RunData.snapshots), kept in request order; all but the first and
        # the latest have their sites dropped.
        self.snapshots = snapshots
        self._paths: list[Path] = []
        # index -> (the sites it was cut down to, what it holds of them)
        self._trimmed: dict[int, tuple[frozenset[Traceback], dict[Traceback, SiteStat]]] = {}
        self.unreadable: list[str] = []  # snapshot files that could not be read back

    def add(self, snapshot: Snapshot, path: Path) -> None:
        snapshots = self.snapshots
        if len(snapshots) >= FULL_SNAPSHOTS:  # the latest becomes one in between (never the first)
            snapshots[-1] = replace(snapshots[-1], sites={})
        snapshots.append(snapshot)
        self._paths.append(path)

    def held_in_full(self) -> int:
        """How many snapshots hold all their sites in memory."""
        return sum(1 for s in self.snapshots if s.sites)

    def sites_held_in_between(self) -> int:
        """Sites held for the snapshots in between (cut down to what the suspects read)."""
        return sum(len(sites) for _wanted, sites in self._trimmed.values())

    def for_analysis(self, min_size_diff: int) -> list[Snapshot]:
        """All snapshots, each with every site that `find_suspects` reads at thresholds whose
        `suspect_min_total_bytes` is `min_size_diff`: what it would read from the full ones."""
        snapshots = list(self.snapshots)
        if len(snapshots) < 3:
            return snapshots
        first, last = snapshots[0], snapshots[-1]
        wanted = frozenset(tb for tb, _new, _old in grown_sites(first.sites, last.sites, min_size_diff))
        for index in range(1, len(snapshots) - 1):
            held = self._trimmed.get(index)
            if held is None or not wanted <= held[0]:
                held = (wanted, self._read_sites(index, wanted))
                self._trimmed[index] = held
            snapshots[index] = replace(snapshots[index], sites=held[1])
        return snapshots

    def _read_sites(self, index: int, wanted: frozenset[Traceback]) -> dict[Traceback, SiteStat]:
        path = self._paths[index]
        try:
            sites = loads_snapshot(path.read_bytes()).sites
        except (OSError, SnapshotFormatError) as exc:
            # Written by this run moments ago; if it is gone, the series shows 0 there.
            self.unreadable.append(f"{path}: {exc}")
            return {}
        return {tb: sites[tb] for tb in wanted if tb in sites}
