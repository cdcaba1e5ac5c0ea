"""Raw Locust, no memsoak plugin: the same user as locustfiles/seed.py (FastHttpUser, GET /, no
wait). Stops itself after BENCH_REQUESTS requests and writes Locust's totals to BENCH_STATS."""

import json
import os
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task

LIMIT = int(os.environ.get("BENCH_REQUESTS", "10000"))
_count = 0


@events.request.add_listener
def _count_request(**kwargs: Any) -> None:
    global _count
    _count += 1
    if _count == LIMIT:
        gevent.spawn(_environment.runner.quit)


_environment: Any = None


@events.init.add_listener
def _keep(environment: Any, **_: Any) -> None:
    global _environment
    _environment = environment


@events.test_stop.add_listener
def _write(environment: Any, **_: Any) -> None:
    total = environment.stats.total
    with open(os.environ["BENCH_STATS"], "w", encoding="utf-8") as file:
        json.dump({"requests": total.num_requests, "rps": total.total_rps}, file)


class RawUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/")
