"""The corpus scenario: every request carries a number unique to the run (`?i=N`), so targets whose
leak is keyed per request (caches, registries) see a new key each time. Paths come from
`MEMSOAK_CORPUS_PATHS` (comma-separated, default `/`) and are taken in turn, which is how a target
with two routes gets both exercised."""

import itertools
import os

from locust import task  # first: Locust's import monkey-patches the stdlib with gevent

from memsoak.locust import MemsoakHttpUser

PATHS = [p.strip() for p in os.environ.get("MEMSOAK_CORPUS_PATHS", "/").split(",") if p.strip()] or ["/"]
_counter = itertools.count()


class CorpusUser(MemsoakHttpUser):
    @task
    def hit(self) -> None:
        n = next(_counter)
        self.client.get(f"{PATHS[n % len(PATHS)]}?i={n}", name=PATHS[n % len(PATHS)])
