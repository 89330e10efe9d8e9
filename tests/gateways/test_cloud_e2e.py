"""End to end through each cloud adapter against a local fake of its provider (``tests/gateways/fakes.py``:
a real HTTP server on 127.0.0.1 that speaks the documented wire format and verifies signatures).

Per provider: ``broadcast run`` (in-process CLI, ``BROADCAST_<GW>_ENDPOINT`` → the fake) sends two
approved messages: one to three numbers, one to a number the fake answers too late (the client times
out although the provider has it: ``in_doubt``). Then ``broadcast receipts serve`` (its own process,
started for real) gets the provider's push for two of them — Twilio's signed for the public URL
behind a pretend reverse proxy, plus a forged one (403) — and ``broadcast receipts pull`` settles
the third and the in-doubt one. Final states: delivered, failed, delivered, delivered.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.gateways.fakes import FakeAliyun, FakeProvider, FakeTencent, FakeTwilio
from tests.helpers.serve import serve_cli

pytestmark = pytest.mark.slow

PATH_SECRET = "e2e-path-secret"
PUBLIC = "https://sms.example.org/receipts"  # the receipts endpoint as the provider sees it (reverse proxy)
PHONES = ["+8613912340001", "+8613912340002", "+8613912340003", "+8613912340004"]
A, B, C, D = PHONES
FAIL_CODE = {"aliyun": "MK:0001", "tencent": "MK:0005", "twilio": "30003"}


def provider_env(name: str, url: str) -> tuple[FakeProvider, dict[str, str]]:
    if name == "aliyun":
        return FakeAliyun("LTAI-e2e", "e2e-aliyun-secret"), {
            "BROADCAST_ALIYUN_ACCESS_KEY_ID": "LTAI-e2e", "BROADCAST_ALIYUN_ACCESS_KEY_SECRET": "e2e-aliyun-secret",
            "BROADCAST_ALIYUN_SIGN_NAME": "城南新区", "BROADCAST_ALIYUN_TEMPLATE_CODE": "SMS_100001"}
    if name == "tencent":
        return FakeTencent("AKID-e2e", "e2e-tencent-secret"), {
            "BROADCAST_TENCENT_SECRET_ID": "AKID-e2e", "BROADCAST_TENCENT_SECRET_KEY": "e2e-tencent-secret",
            "BROADCAST_TENCENT_SDK_APP_ID": "1400006666", "BROADCAST_TENCENT_SIGN_NAME": "城南新区",
            "BROADCAST_TENCENT_TEMPLATE_ID": "449739", "BROADCAST_TENCENT_PULL_RECEIPTS": "true"}
    sid = "AC" + "e2e".ljust(32, "0")
    return FakeTwilio(sid, "e2e-twilio-token"), {
        "BROADCAST_TWILIO_ACCOUNT_SID": sid, "BROADCAST_TWILIO_AUTH_TOKEN": "e2e-twilio-token",
        "BROADCAST_TWILIO_FROM": "+15005550006", "BROADCAST_TWILIO_STATUS_CALLBACK": f"{PUBLIC}/{PATH_SECRET}/twilio"}


def states(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("select phone, status from deliveries")).all())  # type: ignore[arg-type]


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_members(path: Path, phones: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "手机"])
        w.writerows((f"同志{i}", p[3:]) for i, p in enumerate(phones))


@pytest.mark.parametrize("name", ["aliyun", "tencent", "twilio"])
def test_send_push_and_pull_through_a_local_fake(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 cli: Callable[..., Any], ws: Any) -> None:
    engine: sa.Engine = ws.engine
    started = time.perf_counter()
    fake, env = provider_env(name, "")
    with fake.running() as url:
        env[f"BROADCAST_{name.upper()}_ENDPOINT"] = url + ("/" if name != "twilio" else "")
        env[f"BROADCAST_{name.upper()}_TIMEOUT_S"] = "1"
        for key, value in {**env, "BROADCAST_GATEWAY": name, "BROADCAST_REQUIRE_APPROVAL": "false",
                           "BROADCAST_QUIET_HOURS": "", "BROADCAST_RECEIPTS_SECRET": PATH_SECRET,
                           "BROADCAST_RECEIPTS_PUBLIC_URL": PUBLIC, "BROADCAST_RECEIPTS_APPLY_INTERVAL_S": "0.05"}.items():
            monkeypatch.setenv(key, value)
        fake.hang[D[3:]] = 2.5  # answers after the client's 1 s timeout: in doubt

        write_members(tmp_path / "main.csv", [A, B, C])
        write_members(tmp_path / "slow.csv", [D])
        for args in (("group", "add", "全体"), ("group", "add", "慢"),
                     ("member", "import", str(tmp_path / "main.csv"), "--group", "全体"),
                     ("member", "import", str(tmp_path / "slow.csv"), "--group", "慢"),
                     ("gateway", "check", "--online")):
            result = cli(*args)
            assert result.exit_code == 0, result
        for text, group in (("【城南】明天上午九点开会，请准时参加。", "全体"), ("【城南】停水通知：周六八点至十二点。", "慢")):
            result = cli("message", "new", "--text", text, "--to", group, "--json")
            assert result.exit_code == 0 and result.json()["status"] == "approved", result

        result = cli("run", "--json")
        assert result.exit_code == 3, result  # needs attention: one delivery in doubt
        assert states(engine) == {A: "accepted", B: "accepted", C: "accepted", D: "in_doubt"}, result
        assert {s.phone for s in fake.sent} == set(PHONES) and len(fake.sent) == 4  # each sent once
        sent_s = time.perf_counter() - started

        fake.settle(A, "delivered", "DELIVRD" if name != "twilio" else "")
        fake.settle(B, "failed", FAIL_CODE[name])
        fake.settle(C, "delivered", "DELIVRD" if name != "twilio" else "")
        fake.settle(D, "delivered", "DELIVRD" if name != "twilio" else "")

        with serve_cli(tmp_path / "receipts.log") as local:
            if isinstance(fake, FakeTwilio):
                forged = fake.push(PUBLIC, local, [C], token="not-the-auth-token")
                assert [r.status_code for r in forged] == [403]
                answers = fake.push(PUBLIC, local, [A, B])
                assert [(r.status_code, r.text) for r in answers] == [(200, ""), (200, "")]
            else:
                answer = fake.push(f"{local}/{PATH_SECRET}/{name}", [A, B])  # type: ignore[attr-defined]
                assert answer.status_code == 200, answer.text
                expected = {"aliyun": {"code": 0, "msg": "成功"}, "tencent": {"result": 0, "errmsg": "OK"}}[name]
                assert answer.json() == expected
                assert httpx.post(f"{local}/{PATH_SECRET}/{name}", content=b"not json").status_code == 400
            wait_for(lambda: states(engine)[A] == "delivered" and states(engine)[B] == "failed", "pushed receipts")
        assert states(engine)[C] == "accepted" and states(engine)[D] == "in_doubt"

        result = cli("receipts", "pull", "--json")
        assert result.exit_code == 0, result
        summary = result.json()
        assert states(engine) == {A: "delivered", B: "failed", C: "delivered", D: "delivered"}, summary
        assert summary["settled"] == 1 and summary["still_in_doubt"] == 0, summary
        (gw,) = summary["gateways"]
        assert gw["gateway"] == name and gw["errors"] == 0 and gw["requests"] >= 1, summary

        again = cli("receipts", "pull", "--json").json()
        assert again["gateways"] == [] and again["recorded"] == 0
        assert fake.rejected == 0  # every request broadcast made was signed/authenticated correctly
    with engine.connect() as conn:
        failed = conn.execute(sa.text("select error_code from deliveries where phone = :p"), {"p": B}).scalar_one()
        gateways = set(conn.execute(sa.text("select distinct gateway from receipts")).scalars())
    assert failed == FAIL_CODE[name] and gateways == {name}
    print(f"\n{name} e2e: sent in {sent_s:.2f} s, pushed and pulled to final states in {time.perf_counter() - started:.2f} s")
