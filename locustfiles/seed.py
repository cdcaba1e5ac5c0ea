"""The seed scenario: every user sends `GET /` back to back, no wait (run it with -u 10, as the
write-up's `ab -c 10`). memsoak keeps the request count exact."""

from locust import task  # first: Locust's import monkey-patches the stdlib with gevent

from memsoak.locust import MemsoakHttpUser


class SeedUser(MemsoakHttpUser):
    @task
    def index(self) -> None:
        self.client.get("/")
