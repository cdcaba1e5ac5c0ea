"""Only the C extensions; every other piece of metadata is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "memsoak.agent._grouping",
            sources=["memsoak/agent/_grouping.c"],
            # Required, not optional: without it the agent's snapshots fall back to a
            # several times slower grouping that blocks the target for longer.
            optional=False,
            extra_compile_args=["-Wall", "-Wextra"],
        ),
        Extension(
            "memsoak.agent._callhook",
            sources=["memsoak/agent/_callhook.c"],
            # Required too: without it the call-path window watches with `sys.setprofile`,
            # several times slower for the target.
            optional=False,
            extra_compile_args=["-Wall", "-Wextra"],
        ),
        Extension(
            "memsoak.agent._objtrace",
            sources=["memsoak/agent/_objtrace.c"],
            # Required too: without it the retention search cannot see where instances of
            # classes defined in Python were allocated (tracemalloc misses them on 3.11).
            optional=False,
            extra_compile_args=["-Wall", "-Wextra"],
        ),
    ]
)
