"""broadcast: a command-line bulk SMS broadcaster.

The package is a core library (``broadcast.recipients``, ``broadcast.db``, ...) with a thin
command-line layer in ``broadcast.cli``. Nothing outside ``broadcast.cli`` imports typer or rich.
"""

__version__ = "0.1.0"
