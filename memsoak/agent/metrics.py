"""Prometheus metrics for watching a soak live: `GET /__memsoak__/metrics` on the agent.

RSS and traced memory are read at scrape time (cheap: no snapshot). Per-site growth comes from
the snapshots the harness takes anyway: each one is folded into sizes per allocation line, and
the metric is the growth of the top sites since the first snapshot seen after the first scrape.
Nothing is kept until someone scrapes, so a run nobody watches carries no extra allocations;
once watched, the bookkeeping lives in this file, which a report may then list as a small
plateau.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

_OWN_FILE = os.path.abspath(__file__)

TOP_SITES = 10
MIN_SITE_BYTES = 1024  # smaller sites are not kept between snapshots


class SiteGrowth:
    """Live size per allocation line (innermost frame) at the first and the latest snapshot."""

    def __init__(self) -> None:
        self.watching = False
        self.snapshots = 0
        self._first: dict[str, int] | None = None
        self._latest: dict[str, int] = {}

    def observe(self, doc: dict[str, Any]) -> None:
        if not self.watching:
            return
        harness = (*doc.get("harness_files", ()), _OWN_FILE)  # our own bookkeeping is not growth
        frames = doc["frames"]
        sizes: dict[str, int] = {}
        for size, _count, indexes in doc["sites"]:
            if not indexes or any(frames[i][0].startswith(harness) for i in indexes):
                continue
            file, line = frames[indexes[-1]][0], frames[indexes[-1]][1]
            key = f"{file}:{line}"
            sizes[key] = sizes.get(key, 0) + size
        kept = {key: size for key, size in sizes.items() if size >= MIN_SITE_BYTES}
        self.snapshots += 1
        if self._first is None:
            self._first = kept
        self._latest = kept

    def top(self, count: int = TOP_SITES) -> list[tuple[str, int]]:
        if self._first is None:
            return []
        first = self._first
        growth = [(site, size - first.get(site, 0)) for site, size in self._latest.items()]
        growth.sort(key=lambda item: -item[1])
        return [item for item in growth[:count] if item[1] > 0]


class _Collector:
    def __init__(self, read_status: Any, growth: SiteGrowth) -> None:
        self._read_status = read_status
        self._growth = growth

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self._read_status()
        yield GaugeMetricFamily("memsoak_rss_bytes", "Resident set size of the target", status["rss_bytes"])
        yield GaugeMetricFamily(
            "memsoak_traced_bytes", "Memory traced by tracemalloc in the target", status["traced_bytes"]
        )
        yield GaugeMetricFamily(
            "memsoak_traced_peak_bytes",
            "Peak traced memory since tracing started",
            status["traced_peak_bytes"],
        )
        yield GaugeMetricFamily(
            "memsoak_tracemalloc_overhead_bytes",
            "tracemalloc's own bookkeeping",
            status["tracemalloc_overhead_bytes"],
        )
        yield CounterMetricFamily(
            "memsoak_requests_served", "Requests the app has served", status["requests_served"]
        )
        yield CounterMetricFamily(
            "memsoak_snapshots_observed",
            "Snapshots seen since metrics were first scraped",
            self._growth.snapshots,
        )
        sites = GaugeMetricFamily(
            "memsoak_site_growth_bytes",
            f"Growth of the top {TOP_SITES} allocation lines since the first snapshot watched",
            labels=["site"],
        )
        for site, growth in self._growth.top():
            sites.add_metric([site], growth)
        yield sites


class Metrics:
    def __init__(self, read_status: Any) -> None:
        from prometheus_client import CollectorRegistry

        self.growth = SiteGrowth()
        # A registry of our own: the app's default registry (if it has one) is left alone.
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(read_status, self.growth))
        # prometheus_client imports more modules on its first render: do it now, before any
        # snapshot is watched, or those imports would show as growth between two snapshots.
        self.render()

    def render(self) -> tuple[str, bytes]:
        """(content type, body) in Prometheus' text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.growth.watching = True
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)
