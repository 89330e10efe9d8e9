"""Secrets never leak: every command of the cloud-gateway issue is run with recognisable fake secrets
against a local fake of each provider (``fakes.py``), and everything printed (stdout, stderr, log
records, the receipts server's own output), stored (every text column of every table, the audit
trail included) and written (every file under the test's directory, the SQLite database and its WAL
as bytes) is searched for them. Aliyun's secret comes from a ``.env`` file (the one file excluded
from the search), the others from the environment.

Also the failure paths: a provider that rejects the signature/credentials, and an invalid setting.
"""

from __future__ import annotations

import base64
import csv
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.gateways.fakes import FakeAliyun, FakeProvider, FakeTencent, FakeTwilio
from tests.helpers.serve import serve_cli

SECRETS = {
    "aliyun": "SECRET-ALIYUN-7f3a9c1e55d2",
    "tencent": "SECRET-TENCENT-b41d8e02a9f7",
    "twilio": "SECRET-TWILIO-c9e5a7130d6b",
}
SID = "AC" + "5ec7e7".ljust(32, "0")
PUBLIC = "https://sms.example.org/receipts"
PHONES = ["+8613912340001", "+8613912340002"]


def make_fake(name: str) -> FakeProvider:
    if name == "aliyun":
        return FakeAliyun("LTAI-secrets-test", SECRETS[name])
    if name == "tencent":
        return FakeTencent("AKID-secrets-test", SECRETS[name])
    return FakeTwilio(SID, SECRETS[name])


def configure(name: str, tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = SECRETS[name]
    common = {"BROADCAST_GATEWAY": name, "BROADCAST_REQUIRE_APPROVAL": "false", "BROADCAST_QUIET_HOURS": "",
              "BROADCAST_RECEIPTS_PUBLIC_URL": PUBLIC, "BROADCAST_RECEIPTS_APPLY_INTERVAL_S": "0.05",
              f"BROADCAST_{name.upper()}_ENDPOINT": url + ("" if name == "twilio" else "/")}
    if name == "aliyun":
        env_file = tmp_path / "secret.env"
        env_file.write_text(f"BROADCAST_ALIYUN_ACCESS_KEY_SECRET={secret}\n", encoding="utf-8")
        common |= {"BROADCAST_ENV_FILE": str(env_file), "BROADCAST_ALIYUN_ACCESS_KEY_ID": "LTAI-secrets-test",
                   "BROADCAST_ALIYUN_SIGN_NAME": "城南新区", "BROADCAST_ALIYUN_TEMPLATE_CODE": "SMS_100001"}
    elif name == "tencent":
        common |= {"BROADCAST_TENCENT_SECRET_ID": "AKID-secrets-test", "BROADCAST_TENCENT_SECRET_KEY": secret,
                   "BROADCAST_TENCENT_SDK_APP_ID": "1400006666", "BROADCAST_TENCENT_SIGN_NAME": "城南新区",
                   "BROADCAST_TENCENT_TEMPLATE_ID": "449739", "BROADCAST_TENCENT_PULL_RECEIPTS": "true"}
    else:
        common |= {"BROADCAST_TWILIO_ACCOUNT_SID": SID, "BROADCAST_TWILIO_AUTH_TOKEN": secret,
                   "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_TWILIO_STATUS_CALLBACK": f"{PUBLIC}/twilio"}
    for key, value in common.items():
        monkeypatch.setenv(key, value)


def needles(name: str) -> list[bytes]:
    secret = SECRETS[name]
    out = [secret.encode()]
    if name == "twilio":  # the basic-auth header value, in case a request were ever dumped
        out.append(base64.b64encode(f"{SID}:{secret}".encode()))
    return out


def stored_text(engine: sa.Engine) -> list[tuple[str, str, str]]:
    """(table, column, value) for every non-null value of every column of every table."""
    out = []
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                out += [(table.name, col, str(value)) for col, value in row.items() if value is not None]
    return out


@pytest.mark.parametrize("name", ["aliyun", "tencent", "twilio"])
def test_no_secret_is_printed_logged_stored_or_written(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       cli: Callable[..., Any], ws: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    printed: list[str] = []

    def run(*args: str, expect: int | tuple[int, ...] = 0) -> Any:
        result = cli(*args)
        printed.extend([result.stdout, result.stderr])
        assert result.exit_code in ((expect,) if isinstance(expect, int) else expect), (args, result)
        return result

    fake = make_fake(name)
    with fake.running() as url:
        configure(name, tmp_path, url, monkeypatch)

        csv_path = tmp_path / "m.csv"
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["姓名", "手机"])
            w.writerows((f"同志{i}", p[3:]) for i, p in enumerate(PHONES))
        run("config")
        run("config", "--json")
        run("gateway", "list")
        run("gateway", "list", "--json")
        run("gateway", "check")
        run("gateway", "check", "--json")
        run("gateway", "check", "--online")
        run("gateway", "check", "--online", "--json")
        run("gateway", "test", "+8613912340009")
        run("gateway", "test", "+8613912340009", "--text", "测试", "--json")
        run("group", "add", "全体")
        run("member", "import", str(csv_path), "--group", "全体")
        run("message", "new", "--text", "【城南】明天开会。", "--to", "全体", "--json")
        run("run")
        for phone in PHONES:
            fake.settle(phone, "delivered", "DELIVRD")
        with serve_cli(tmp_path / "serve.log") as local:
            if isinstance(fake, FakeTwilio):
                assert [r.status_code for r in fake.push(PUBLIC, local, PHONES[:1])] == [200]
                assert [r.status_code for r in fake.push(PUBLIC, local, PHONES[1:], token="forged")] == [403]
            else:
                assert fake.push(f"{local}/{name}", PHONES[:1]).status_code == 200  # type: ignore[attr-defined]
            assert httpx.get(f"{local}/healthz").status_code == 200
            time.sleep(0.3)
        run("receipts", "pull")
        run("receipts", "pull", "--json")
        run("receipts", "status")
        run("audit", "log")
        run("audit", "verify")

        # failure paths: the provider rejects our credentials …
        if isinstance(fake, FakeTwilio):
            fake.auth_token = "another-token"
        elif isinstance(fake, FakeAliyun):
            fake.secret = "another-secret"
        else:
            fake.secret_key = "another-secret"  # type: ignore[attr-defined]
        run("gateway", "check", "--online", expect=1)
        run("gateway", "check", "--online", "--json", expect=1)
        run("gateway", "test", "+8613912340009", expect=1)
        run("message", "new", "--text", "【城南】第二条。", "--to", "全体", "--json")
        run("run", expect=(0, 3))
        run("receipts", "pull", "--json")
        # … and an invalid setting next to the secret
        monkeypatch.setenv(f"BROADCAST_{name.upper()}_TIMEOUT_S", "not-a-number")
        run("gateway", "check", expect=(1, 2))
        assert fake.rejected > 0  # the failure paths really reached the provider

    assert fake.requests, "the fake provider was never called"
    engine: sa.Engine = ws.engine
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from receipts")).scalar_one() >= 1
        assert conn.execute(sa.text("select count(*) from audit_log")).scalar_one() >= 3
    haystacks = [("output", t) for t in printed] + [("log", caplog.text)]
    haystacks += [(f"db {table}.{col}", value) for table, col, value in stored_text(engine)]
    leaks = [(where, n.decode()) for where, text in haystacks for n in needles(name) if n.decode() in text]
    env_file = tmp_path / "secret.env"
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != env_file]
    assert any(p.name == "serve.log" for p in files) and any(p.suffix == ".db" for p in files)
    leaks += [(str(p), n.decode()) for p in files for n in needles(name) if n in p.read_bytes()]
    assert leaks == []
