"""Run a `broadcast` command under cProfile, the engine's database thread included.

    python benchmarks/_profiled.py OUT.prof worker --poll 0.2

``python -m cProfile`` sees the main thread only, while the engine claims and records on a
thread of its own (``Dispatcher.db``): each thread of the thread pools gets a profiler of its own,
and the profiles are merged into OUT.prof when the command exits.
"""

from __future__ import annotations

import concurrent.futures.thread as pool_thread
import cProfile
import pstats
import sys
from typing import Any


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    profiles: list[cProfile.Profile] = []
    original = pool_thread._worker  # type: ignore[attr-defined]

    def profiled_worker(*a: Any, **k: Any) -> Any:
        prof = cProfile.Profile()
        profiles.append(prof)
        prof.enable()
        try:
            return original(*a, **k)
        finally:
            prof.disable()

    pool_thread._worker = profiled_worker  # type: ignore[attr-defined]
    main_prof = cProfile.Profile()
    sys.argv = ["broadcast", *args]
    from broadcast.cli.app import main as cli

    main_prof.enable()
    try:
        cli()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    finally:
        main_prof.disable()
        stats = pstats.Stats(main_prof)
        for prof in profiles:
            stats.add(prof)
        stats.dump_stats(out)
    sys.exit(code)


if __name__ == "__main__":
    main()
