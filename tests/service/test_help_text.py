"""Text people read (the CLI's help, the OpenAPI descriptions) is plain words or Markdown, no reStructuredText."""

from __future__ import annotations

import argparse
import json
import re

from service.cli import build_parser
from service.http.app import create_app
from tests.service.conftest import MakeSettings
from training.costs import DEFAULT_LENGTHS

# ``literal``, :role:`target`, and directives such as .. note::
RST = re.compile(r"``|:[a-z]+:`|^\s*\.\. [a-z]+::", re.MULTILINE)


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser by its command line, subcommands of subcommands included."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}", sub)

    walk("latentcast", build_parser())
    return found


def test_every_option_has_help_that_shows_its_default():
    missing = []
    for command, parser in parsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = f"{command} {'/'.join(action.option_strings) or action.dest}"
            text = formatter._expand_help(action) if action.help else ""
            if not text:
                missing.append(f"{name}: no help")
            elif action.option_strings and not action.required and action.nargs != 0 and "default" not in text:
                # a flag's default is its absence; a positional or required option has none
                missing.append(f"{name}: no default in {text!r}")
    assert missing == []
    assert len(parsers()) == 14


def test_a_default_is_shown_as_it_is_typed():
    help_text = " ".join(parsers()["latentcast compare"].format_help().split())
    lengths = " ".join(str(n) for n in DEFAULT_LENGTHS)
    assert f"history lengths to time (default: {lengths})" in help_text
    assert "--cell {RNN,LSTM,GRU} the recurrent core's cell (default: GRU)" in help_text


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
