from __future__ import annotations

import pytest

from service.http.api_doc import (
    BEGIN,
    COMMAND,
    DOC,
    END,
    OUTSIDE_SCHEMA,
    main,
    render,
    routes_outside_schema,
    with_table,
)
from service.http.app import create_app
from tests.service.conftest import MakeSettings


def test_the_committed_route_table_is_up_to_date():
    assert main(["--check"]) == 0, f"docs/api.md's route table is stale: run {COMMAND}"


def test_every_operation_of_the_schema_has_a_row_and_every_route_outside_it_is_described(make_settings: MakeSettings):
    app = create_app(make_settings())
    table = render(app)
    operations = [(m, p) for p, ops in app.openapi()["paths"].items() for m in ops]
    assert len(operations) >= 20
    for method, path in operations:
        assert f"| `{method.upper()} {path}` |" in table
    assert "| `POST /v1/sessions` | Open a session | 201; errors 401, 404, 413, 415, 422, 429, 503 |" in table
    assert sorted(routes_outside_schema(app)) == sorted(OUTSIDE_SCHEMA)
    assert table.count("\n| `") == len(operations) + len(OUTSIDE_SCHEMA)


def test_check_names_the_command_when_stale_and_the_rest_of_the_page_is_kept(tmp_path, monkeypatch, capsys):
    page = tmp_path / "api.md"
    page.write_text(f"# HTTP API\n\nabove\n\n{BEGIN}\n| old |\n{END}\n\nbelow\n")
    monkeypatch.setattr("service.http.api_doc.DOC", page)
    assert main(["--check"]) == 1
    assert COMMAND in capsys.readouterr().err
    assert main([]) == 0 and main(["--check"]) == 0
    text = page.read_text()
    assert text.startswith("# HTTP API\n\nabove\n\n" + BEGIN) and text.endswith(END + "\n\nbelow\n")
    assert "| old |" not in text
    with pytest.raises(ValueError, match="has no route table markers"):
        with_table("no markers", "table")
    assert DOC.name == "api.md"
