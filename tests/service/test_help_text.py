"""Text people read (the CLI's help, the OpenAPI descriptions) is plain words or Markdown, no reStructuredText."""

from __future__ import annotations

import argparse
import json
import re

from service.app import create_app
from service.cli import build_parser
from tests.service.conftest import MakeSettings

# ``literal``, :role:`target`, and directives such as .. note::
RST = re.compile(r"``|:[a-z]+:`|^\s*\.\. [a-z]+::", re.MULTILINE)


def helps() -> dict[str, str]:
    parser = build_parser()
    texts = {"latentcast": parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts |= {f"latentcast {name}": sub.format_help() for name, sub in action.choices.items()}
    return texts


def test_the_cli_help_of_every_command_is_plain_text():
    texts = helps()
    assert {"latentcast", "latentcast serve", "latentcast train"} <= set(texts)
    for command, text in texts.items():
        assert not RST.search(text), f"{command} --help: {RST.search(text)!r} in\n{text}"


def test_the_openapi_descriptions_are_plain_text_or_markdown(make_settings: MakeSettings):
    schema = create_app(make_settings()).openapi()
    found = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("description", "summary") and isinstance(value, str) and RST.search(value):
                    found.append(f"{where}: {value}")
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert found == []
    assert "`seq`" in json.dumps(schema)  # Markdown stays: it renders in /docs
