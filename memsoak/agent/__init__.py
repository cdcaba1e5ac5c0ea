"""The in-target agent: `Agent` middleware and the `serve` launcher."""

from memsoak.agent.middleware import PREFIX, Agent

__all__ = ["PREFIX", "Agent"]
