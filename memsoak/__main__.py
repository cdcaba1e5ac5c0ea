from memsoak.cli import run_cli

run_cli()
