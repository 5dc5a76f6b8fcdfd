"""The settings reference, docs/settings.md, written from the ``Settings`` fields and their descriptions.

    .venv/bin/python -m service.settings_doc           # rewrite docs/settings.md
    .venv/bin/python -m service.settings_doc --check   # exit 1 if it is stale

``tests/service/test_settings_doc.py`` fails when the committed file differs
from what this writes, so the reference cannot drift from ``service/config.py``.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from pydantic.fields import FieldInfo

from data.files import write_whole
from service.config import CLIENT_VARIABLES, ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
COMMAND = ".venv/bin/python -m service.settings_doc"

INTRO = f"""# Settings

Every setting of the service is an environment variable, read once per process
by `service/config.py` (`Settings`). This page is written from that file by
`{COMMAND}`; a test fails when it is stale.

| variable | default | meaning |
| --- | --- | --- |
"""


CLIENT_INTRO = f"""
## Read by the client side

`latentcast replay` talks to a running service and reads these, which the
service does not. Its default `--url` is made of `{ENV_PREFIX}HOST` (127.0.0.1
when it is 0.0.0.0) and `{ENV_PREFIX}PORT` above: where `latentcast serve`
listens with the same settings.

| variable | default | meaning |
| --- | --- | --- |
"""


def render() -> str:
    """docs/settings.md's text: one table row per ``Settings`` field, in the order of the class, then the
    variables the client side reads (``CLIENT_VARIABLES``)."""
    rows = [_row(name, field) for name, field in Settings.model_fields.items()]
    client = [f"| `{name}` | none | {meaning} |" for name, meaning in CLIENT_VARIABLES.items()]
    return INTRO + "\n".join(rows) + "\n" + CLIENT_INTRO + "\n".join(client) + "\n"


def _row(name: str, field: FieldInfo) -> str:
    meaning = field.description or ""
    choices = _choices(field.annotation)
    if choices:
        meaning = f"{meaning} (one of {', '.join(f'`{c}`' for c in choices)})"
    return f"| `{ENV_PREFIX}{name.upper()}` | {_default(field.default)} | {meaning} |"


def _default(value: object) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, tuple):
        return f"`{','.join(str(v) for v in value)}`"
    return f"`{value}`"


def _choices(annotation: object) -> tuple[str, ...]:
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(str(a) for a in typing.get_args(annotation))
    return ()


def write_or_check(doc: Path, text: str, check: bool, stale: str) -> int:
    """Write ``text`` to ``doc``, or with ``check`` only compare: 1, with ``stale`` on stderr, when they differ."""
    if check:
        if not doc.exists() or doc.read_text() != text:
            sys.stderr.write(stale + "\n")
            return 1
        return 0
    write_whole(doc, text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/settings.md from the Settings fields.")
    parser.add_argument("--check", action="store_true", help="only check that docs/settings.md is up to date")
    args = parser.parse_args(argv)
    return write_or_check(DOC, render(), args.check, f"{DOC} is stale: run {COMMAND}")


if __name__ == "__main__":
    sys.exit(main())
