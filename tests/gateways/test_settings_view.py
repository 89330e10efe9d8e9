"""Every installed gateway's settings are visible (secrets masked), and a missing required
setting is named, all of them at once."""

from __future__ import annotations

import pytest

from broadcast.errors import ConfigError
from broadcast.gateways import registry, settings_view

SECRET = "Sup3rSecretValueXY"


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(tmp_path / "absent.env"))
    for key in list(__import__("os").environ):
        if key.startswith(("BROADCAST_ALIYUN_", "BROADCAST_TWILIO_", "BROADCAST_KANNEL_", "BROADCAST_TENCENT_")):
            monkeypatch.delenv(key)


def by_name():
    return {g.name: g for g in settings_view.installed()}


def test_every_registered_gateway_is_shown():
    assert set(by_name()) == set(registry.names())
    assert {"simulator", "console", "http", "aliyun", "tencent", "twilio", "kannel"} <= set(by_name())


def test_secrets_show_stars_and_at_most_the_last_two_characters(monkeypatch):
    monkeypatch.setenv("BROADCAST_ALIYUN_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("BROADCAST_ALIYUN_ACCESS_KEY_ID", "LTAIkeyid")
    rows = {r.env: r for r in by_name()["aliyun"].settings}
    assert rows["BROADCAST_ALIYUN_ACCESS_KEY_SECRET"].value == "****XY"
    assert rows["BROADCAST_ALIYUN_ACCESS_KEY_SECRET"].secret
    assert rows["BROADCAST_ALIYUN_ACCESS_KEY_ID"].value == "LTAIkeyid"  # an id is not a secret
    assert SECRET not in repr(by_name())
    assert SECRET[:-2] not in str([g.to_dict() for g in settings_view.installed()])


def test_short_secrets_show_no_characters():
    assert settings_view.mask_secret("abc1234") == "****"
    assert settings_view.mask_secret("abcd12345") == "****45"
    assert settings_view.mask_secret("") == ""


def test_missing_required_settings_are_all_named(monkeypatch):
    monkeypatch.setenv("BROADCAST_ALIYUN_ACCESS_KEY_SECRET", SECRET)
    view = by_name()["aliyun"]
    missing = [r.env for r in view.settings if r.missing]
    assert missing == ["BROADCAST_ALIYUN_ACCESS_KEY_ID", "BROADCAST_ALIYUN_SIGN_NAME", "BROADCAST_ALIYUN_TEMPLATE_CODE"]
    assert view.problem is not None and all(m in view.problem for m in missing)
    with pytest.raises(ConfigError) as info:
        registry.load_settings(registry.load("aliyun"))
    assert all(m in info.value.message for m in missing)
    assert SECRET not in info.value.message


def test_defaults_and_sources(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("BROADCAST_KANNEL_URL=http://127.0.0.1:13013/cgi-bin/sendsms\nBROADCAST_KANNEL_PASSWORD=kannelpass99\n")
    monkeypatch.setenv("BROADCAST_ENV_FILE", str(env))
    monkeypatch.setenv("BROADCAST_KANNEL_USERNAME", "tester")
    view = by_name()["kannel"]
    rows = {r.env: r for r in view.settings}
    assert rows["BROADCAST_KANNEL_URL"].source == ".env"
    assert rows["BROADCAST_KANNEL_USERNAME"].source == "environment"
    assert rows["BROADCAST_KANNEL_PASSWORD"].value == "****99"
    assert all(r.source == "default" for r in rows.values() if r.env not in
               {"BROADCAST_KANNEL_URL", "BROADCAST_KANNEL_USERNAME", "BROADCAST_KANNEL_PASSWORD"})
    assert view.problem is None


def test_an_invalid_value_is_the_problem_not_a_crash(monkeypatch):
    monkeypatch.setenv("BROADCAST_SIMULATOR_FAILURE_RATE", "2")
    view = by_name()["simulator"]
    assert view.problem is not None and "BROADCAST_SIMULATOR_FAILURE_RATE" in view.problem


def test_aliased_settings_use_the_variable_a_user_sets(monkeypatch):
    monkeypatch.setenv("BROADCAST_TWILIO_FROM", "+15550001111")
    rows = {r.env: r for r in by_name()["twilio"].settings}
    assert rows["BROADCAST_TWILIO_FROM"].value == "+15550001111"


def test_config_command_shows_every_gateway_masked_and_gateway_check_names_what_is_missing(cli, monkeypatch):
    monkeypatch.setenv("BROADCAST_KANNEL_PASSWORD", SECRET)
    r = cli("config", "--json")
    assert r.exit_code == 0
    gws = r.json()["gateways"]
    assert set(gws) == set(registry.names())
    assert gws["kannel"]["settings"]["BROADCAST_KANNEL_PASSWORD"] == "****XY"
    assert "BROADCAST_KANNEL_URL" in gws["kannel"]["problem"] and "BROADCAST_KANNEL_USERNAME" in gws["kannel"]["problem"]
    assert gws["simulator"]["problem"] is None
    human = cli("config")
    assert "Gateway kannel" in human.stdout and "****XY" in human.stdout
    assert SECRET[:-2] not in r.stdout + human.stdout + human.stderr
    check = cli("gateway", "check", "--gateway", "kannel")
    assert check.exit_code == 1
    assert "BROADCAST_KANNEL_URL" in check.stderr and "BROADCAST_KANNEL_USERNAME" in check.stderr
    assert "Traceback" not in check.stderr
