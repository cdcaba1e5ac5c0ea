"""What the agent (in the target) and its clients (the harness) agree on, in a module that
imports nothing: the harness reads these without loading the agent (psutil, numpy, tracemalloc
helpers), which cost every `memsoak run` a quarter of a second before its target started."""

PREFIX = "/__memsoak__/"  # the agent answers under this path only
MAX_CALLER_LINES = 10  # lines whose call paths one `callers/start` may watch
