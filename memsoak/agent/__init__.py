"""The in-target agent: `Agent` middleware and the `serve` launcher."""

from memsoak.agent.middleware import Agent
from memsoak.protocol import PREFIX

__all__ = ["PREFIX", "Agent"]
