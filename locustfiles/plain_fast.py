"""Plain Locust with the fast client, no memsoak import: `FastHttpUser` gets the exact budget
under `memsoak run --locustfile` as `HttpUser` does."""

from locust import FastHttpUser, constant, task


class Browser(FastHttpUser):
    wait_time = constant(0)

    @task
    def home(self) -> None:
        self.client.get("/")
