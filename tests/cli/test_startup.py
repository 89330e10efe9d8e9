"""`broadcast --help` and commands that need no database must not import what they do not use
(sqlmodel alone costs ~0.3 s). Timing belongs to the benchmark; this checks the imports."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlmodel", "sqlalchemy", "httpx", "openpyxl", "phonenumbers", "alembic", "pydantic_settings")


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    import json

    return set(json.loads(r.stderr.strip().splitlines()[-1]))


def test_help_imports_nothing_heavy():
    loaded = _modules_after(
        "import sys\nsys.argv=['broadcast','--help']\nfrom broadcast.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    assert not [m for m in HEAVY if m in loaded]


def test_core_does_not_import_the_cli_libraries():
    loaded = _modules_after("import broadcast.recipients.importer, broadcast.recipients.members, broadcast.demo")
    assert "typer" not in loaded  # rich: see tests/test_layers.py (httpx may import it for its own CLI)
