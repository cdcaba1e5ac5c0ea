"""The in-target agent: `Agent` (WSGI) and `AsgiAgent` middleware, and the `serve` launcher."""

from memsoak.agent import startup  # first: before anything can have frozen objects
from memsoak.agent.asgi import AsgiAgent
from memsoak.agent.middleware import Agent
from memsoak.protocol import PREFIX

__all__ = ["PREFIX", "Agent", "AsgiAgent", "startup"]
