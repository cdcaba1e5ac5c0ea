"""Locust users whose requests pass through memsoak's request gate: memsoak's own base classes,
and any plain `HttpUser` or `FastHttpUser` of a locustfile that knows nothing of memsoak."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from locust import FastHttpUser, HttpUser, constant
from locust.env import Environment
from locust.exception import StopUser

from memsoak.locust.gate import BudgetSpent, RequestGate


def gate_of(environment: Environment) -> RequestGate | None:
    """The gate of the memsoak plugin running in this process, if any."""
    plugin = getattr(environment, "memsoak", None)
    return getattr(plugin, "gate", None)


class GatedClient:
    """Wraps a Locust HTTP client so that every request takes a token from the gate first."""

    def __init__(self, client: Any, environment: Environment) -> None:
        self._client = client
        self._environment = environment

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        gate = gate_of(self._environment)
        if gate is None:
            return self._client.request(method, url, **kwargs)
        try:
            gate.acquire()
        except BudgetSpent:
            raise StopUser() from None
        try:
            return self._client.request(method, url, **kwargs)
        finally:
            gate.release()

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", url, data=data, **kwargs)

    def put(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url: str, data: Any = None, **kwargs: Any) -> Any:
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Any:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> Any:
        return self.request("OPTIONS", url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class MemsoakHttpUser(FastHttpUser):
    """FastHttpUser with an exact request budget. Derive scenarios from this (or from
    `MemsoakRequestsUser` for the `requests`-based client)."""

    abstract = True
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.client = GatedClient(self.client, environment)  # type: ignore[assignment]


class MemsoakRequestsUser(HttpUser):
    """HttpUser (python-requests) with an exact request budget."""

    abstract = True
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.client = GatedClient(self.client, environment)  # type: ignore[assignment]


GATED_USERS = (MemsoakHttpUser, MemsoakRequestsUser)


def gate_plain_users(user_classes: Iterable[type]) -> list[str]:
    """Route the client of every `HttpUser` and `FastHttpUser` among `user_classes` through the
    gate, as `MemsoakHttpUser` does, without the locustfile saying so: each class's `__init__`
    wraps the client it made. Returns the names of the classes it cannot gate: users with a
    client of their own, whose requests are known only from the request events they fire, after
    they are made, so no budget over them can be exact."""
    ungateable = []
    for cls in user_classes:
        if issubclass(cls, GATED_USERS):
            continue
        if not issubclass(cls, HttpUser | FastHttpUser):
            ungateable.append(cls.__name__)
            continue
        cls.__init__ = _gating(cls.__init__)  # type: ignore[method-assign]
    return ungateable


def _gating(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, environment: Environment, *args: Any, **kwargs: Any) -> None:
        original(self, environment, *args, **kwargs)
        if not isinstance(self.client, GatedClient):  # a parent class gated it already
            self.client = GatedClient(self.client, environment)

    return __init__
