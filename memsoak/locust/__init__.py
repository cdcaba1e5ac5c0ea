"""memsoak as a Locust plugin. Importing this module (a locustfile does) adds the `--memsoak-*`
options and, when Locust starts, registers the plugin on the environment.

    from locust import task
    from memsoak.locust import MemsoakHttpUser

    class Shopper(MemsoakHttpUser):
        @task
        def home(self):
            self.client.get("/")
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from memsoak.errors import MemsoakError
from memsoak.locust.options import Settings, add_options
from memsoak.locust.plugin import MemsoakPlugin
from memsoak.locust.users import MemsoakHttpUser, MemsoakRequestsUser, gate_plain_users

__all__ = ["MemsoakHttpUser", "MemsoakPlugin", "MemsoakRequestsUser"]


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    add_options(parser)


def _check_user_classes(environment: Environment) -> None:
    ungated = gate_plain_users(environment.user_classes)
    if ungated:
        raise MemsoakError(
            f"user class(es) {', '.join(ungated)} have a client of their own, which memsoak cannot "
            "gate: their requests would be counted only after they are made, so the budget could "
            "not be exact; use HttpUser, FastHttpUser or memsoak.locust.MemsoakHttpUser"
        )


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None:  # Locust used as a library: the caller registers
        return
    from memsoak.locust.conductor import ConductorWatch
    from memsoak.locust.distributed import DistributedMasterPlugin
    from memsoak.locust.worker import WorkerPlugin

    watch = ConductorWatch.from_environment()
    if watch is not None:  # a Locust process `memsoak run` started
        watch.register(environment)
    try:
        _check_user_classes(environment)
        if isinstance(environment.runner, WorkerRunner):
            WorkerPlugin().register(environment)  # the master holds the settings and the agent
            return
        plugin_class = (
            DistributedMasterPlugin if isinstance(environment.runner, MasterRunner) else MemsoakPlugin
        )
        plugin = plugin_class(Settings.from_options(environment.parsed_options))
        # Fail before any load is sent, not at the first snapshot.
        plugin.run_dir.prepare()
        plugin.check_agent()
        plugin.register(environment)
    except MemsoakError as exc:
        print(f"memsoak: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(exc.exit_code) from None
