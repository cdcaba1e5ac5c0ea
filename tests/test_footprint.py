"""The harness's own memory over a long run: the Locust process holds the sites of only a bounded
number of snapshots however many checkpoints a run takes, and its reports are what analysis of
every full snapshot gives (`memsoak report` re-reads them all from the run directory)."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.model import Frame, SiteStat, Snapshot
from analysis.snapshot_io import snapshot_to_dict
from analysis.suspects import find_suspects
from analysis.thresholds import Thresholds
from memsoak.rundir import RunDir
from memsoak.snapshot_store import FULL_SNAPSHOTS, SnapshotStore

# Records, after every snapshot the plugin keeps, how many it holds with all their sites.
LOCUSTFILE = """
import json
import os

from locust import events, task

from memsoak.locust import MemsoakHttpUser

held = []


@events.init.add_listener  # after memsoak's, which registered the plugin
def _on_init(environment, **_):
    # After the plugin's test_start listener, which makes a new store for the run.
    environment.events.test_start.add_listener(_watch_store)


def _watch_store(environment, **_):
    plugin = environment.memsoak
    add = plugin.store.add

    def counted(snapshot, path):
        add(snapshot, path)
        held.append([len(plugin.data.snapshots), plugin.store.held_in_full()])
        with open(os.environ["HELD_FILE"], "w") as file:
            json.dump(held, file)

    plugin.store.add = counted


class User(MemsoakHttpUser):
    @task
    def index(self):
        self.client.get("/")
"""


def _without_timing(report: dict[str, object]) -> dict[str, object]:
    """What analysis decided, apart from what only the live run knows (Locust stats, events)."""
    return {k: report[k] for k in ("verdict", "suspects", "checkpoints", "rss_bytes", "traced_bytes")}


def test_snapshots_held_in_memory_stay_bounded(memsoak, tmp_path: Path) -> None:
    (tmp_path / "bounded.py").write_text(LOCUSTFILE)
    out = tmp_path / "run"
    result = memsoak(
        "run", "--app", "targets.seed_leak.app:app", "--locustfile", "bounded.py",
        "--requests", "1200", "--warmup", "100", "--checkpoints", "15", "--users", "4",
        "--format", "json", "--out", str(out),
        env={"HELD_FILE": str(tmp_path / "held.json")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    held = json.loads((tmp_path / "held.json").read_text())
    # The baseline and 15 more, one at a time.
    assert [taken for taken, _full in held] == list(range(1, len(held) + 1))
    assert len(held) == 16
    assert max(full for _taken, full in held) == FULL_SNAPSHOTS

    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "leak"
    assert len(report["checkpoints"]) == len(held)
    top = report["suspects"][0]
    assert (Path(top["file"]).name, top["line"]) == ("fetchuserdata.py", 6)
    # A size at every snapshot, those in between read back from disk (the list grows in steps).
    growth = top["growth"]
    assert len(growth) == len(held)
    assert growth == sorted(growth) and growth[0] < growth[len(growth) // 2] < growth[-1]

    # The same run analysed from every full snapshot on disk gives the same report.
    live = _without_timing(report)
    again = memsoak("report", str(out), "--format", "json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert _without_timing(json.loads((out / "report.json").read_text())) == live


def _site(name: str) -> tuple[Frame, ...]:
    return (Frame(f"/app/{name}.py", 1, "handler", f"{name}.append(x)"),)


def _snapshot_at(requests: int, sizes: dict[str, int]) -> Snapshot:
    sites = {_site(name): SiteStat(size, 1) for name, size in sizes.items()}
    # Noise: sites that never grow, which the store need not keep for the snapshots in between.
    sites.update({_site(f"static{i}"): SiteStat(1000 + i, 1) for i in range(50)})
    total = sum(s.size for s in sites.values())
    return Snapshot(1, 0.0, requests, 10**8 + requests, total, 0, 1, 0.01, sites)


def test_store_gives_analysis_what_the_full_snapshots_give(tmp_path: Path) -> None:
    """Sites in between are read back from disk, cut down, and read again when the set of sites
    that grew changes (here `late` starts growing only after the fourth snapshot)."""
    run_dir = RunDir(tmp_path).prepare()
    limits = Thresholds()
    full: list[Snapshot] = []
    store = SnapshotStore([])
    for step in range(8):
        requests = step * 1000
        sizes = {"leak": 50_000 * step, "late": 200_000 * max(0, step - 4)}
        if step % 2:
            sizes["blinking"] = 60_000 * step  # absent from every other snapshot
        snapshot, path = run_dir.write_snapshot(
            snapshot_to_dict(_snapshot_at(requests, sizes)), requests, "cp"
        )
        full.append(snapshot)
        store.add(snapshot, path)
        assert store.held_in_full() == min(len(full), FULL_SNAPSHOTS)
        given = store.for_analysis(limits.suspect_min_total_bytes)
        assert [s.requests for s in given] == [s.requests for s in full]
        assert find_suspects(given, requests, limits) == find_suspects(full, requests, limits)
    assert {Path(s.file).stem for s in find_suspects(full, 7000, limits)} == {"leak", "late", "blinking"}
    # Only the grown sites are held for the snapshots in between, not the 50 static ones.
    assert store.sites_held_in_between() <= 3 * (len(full) - 2)
    assert store.unreadable == []
