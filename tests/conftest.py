"""Shared test setup: the ``network`` marker is skipped unless ``--network`` is given."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--network", action="store_true", help="also run tests marked network (need the internet)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--network"):
        return
    skip = pytest.mark.skip(reason="touches the internet; run with --network")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)
