"""The harness's own memory over a long run: the Locust process holds the sites of only a bounded
number of snapshots however many checkpoints a run takes, and its reports are what analysis of
every full snapshot gives (`memsoak report` re-reads them all from the run directory)."""

from __future__ import annotations

import json
from pathlib import Path

from memsoak.snapshot_store import FULL_SNAPSHOTS

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
