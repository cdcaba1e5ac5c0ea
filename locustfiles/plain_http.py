"""A locustfile as a team already has it: plain Locust, no memsoak import. `memsoak run
--locustfile locustfiles/plain_http.py` (or `locust -f "$(python -m memsoak.locust.auto)",
locustfiles/plain_http.py ...`) gives it the exact request budget unchanged; `host` is
overridden by the target's URL."""

from locust import HttpUser, constant, task


class Shopper(HttpUser):
    host = "http://shop.internal.example"
    wait_time = constant(0)

    @task(3)
    def home(self) -> None:
        self.client.get("/")

    @task
    def cart(self) -> None:
        with self.client.get("/", name="cart", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"cart answered {response.status_code}")
