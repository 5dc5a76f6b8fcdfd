from __future__ import annotations

from service.config import Settings
from service.settings_doc import COMMAND, DOC, main, render


def test_the_committed_settings_reference_is_up_to_date():
    assert DOC.read_text() == render(), f"docs/settings.md is stale: run {COMMAND}"


def test_every_setting_has_a_row_with_its_variable_default_and_description():
    text = render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"
        assert f"| `LATENTCAST_{name.upper()}` |" in text
    assert "| `LATENTCAST_STORE` | `memory` | session store (one of `memory`, `redis`) |" in text
    assert "| `LATENTCAST_API_KEYS` | none |" in text
    assert "| `LATENTCAST_BATCH_ENABLED` | `true` |" in text


def test_the_client_sides_key_is_listed_apart_from_the_services_keys():
    text = render()
    service, client = text.split("## Read by the client side")
    assert "| `LATENTCAST_API_KEYS` | none |" in service and "`LATENTCAST_API_KEY` |" not in service
    assert "| `LATENTCAST_API_KEY` | none | the key `latentcast replay` sends as X-API-Key" in client
    assert "`LATENTCAST_API_KEYS`" in client


def test_check_names_the_command_when_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "settings.md"
    stale.write_text("old\n")
    monkeypatch.setattr("service.settings_doc.DOC", stale)
    assert main(["--check"]) == 1
    assert COMMAND in capsys.readouterr().err
    assert main([]) == 0 and main(["--check"]) == 0
    assert stale.read_text() == render()
