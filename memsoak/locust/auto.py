"""memsoak for a locustfile that does not import it, named first beside it on Locust's `-f`:

    locust -f "$(python -m memsoak.locust.auto)",locustfile.py --headless --host URL \\
        --memsoak-requests 10000 --memsoak-agent-token TOKEN

(`python -m memsoak.locust.auto` prints this file's path.) Locust 2.x reads every file of a
comma-separated `-f` before it parses its options, so memsoak's options are there, and the
locustfile's `HttpUser` and `FastHttpUser` classes get the exact request budget unchanged.
This file defines no user of its own. `memsoak run --locustfile` names it so by itself.
"""

import locust  # noqa: F401  # first: Locust's import monkey-patches the stdlib with gevent

import memsoak.locust  # noqa: F401  # its import adds the options and registers the plugin

if __name__ == "__main__":
    print(__file__)
