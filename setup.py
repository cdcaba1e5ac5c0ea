"""Only the C extension; every other piece of metadata is in pyproject.toml."""

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
        )
    ]
)
