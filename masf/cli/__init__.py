"""The ``masf-bench`` command line: thin typer commands over library functions that the tests also call.

May import: every part of masf, lazily where a part is heavy (torch, pandas, Ray load with the command
that needs them, not for ``--help``). Nothing in masf imports the CLI.
"""
