"""The gateway contract kit: the checks every ``broadcast`` gateway must pass, built-in or third-party.

Describe how to build your gateway in a ``GatewayCase`` and call ``check_gateway`` from a test::

    import httpx
    from broadcast.gateways.base import make_client
    from broadcast.testing import GatewayCase, check_gateway
    from my_sms import MyGateway, MySettings

    def provider(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "p1"})

    def test_my_gateway_keeps_the_contract() -> None:
        client = lambda handler: make_client(2, transport=httpx.MockTransport(handler))
        check_gateway(GatewayCase(
            "mygw",  # its entry-point name: the package must be installed (pip install -e .)
            healthy=lambda: MyGateway(MySettings(token="fake-token-123"), client(provider)),
            failing=lambda: MyGateway(MySettings(token="fake-token-123"), client(lambda r: httpx.Response(503))),
            hanging=lambda url, timeout_s: MyGateway(MySettings(url=url, token="fake-token-123", timeout_s=timeout_s)),
            recipients=lambda request: 1,  # recipients one request carries
            # address=lambda i: f"user{i}@example.org",  # a gateway that does not address phones
        ))

The checks (each also callable alone, each raising ``AssertionError`` with what is wrong):

* ``check_declarations`` — ``capabilities`` and ``settings_class`` declared (env prefix
  ``BROADCAST_``), ``check()`` a list of strings, the registry loads the class under its name;
* ``check_results_in_order`` — one result per item, in order, accepted with a provider id (where
  receipts or queries would match one: a group robot's answer has none);
* ``check_split_not_dropped`` — more than ``max_batch`` items are split by the gateway, none dropped;
* ``check_failures_classified`` — a failing provider gives classified results (an ``Outcome``, a
  code, ``maybe_sent`` only with ``RETRYABLE``), none accepted, nothing raised;
* ``check_no_secret_leaks`` — no ``SecretStr`` setting value (nor ``case.secrets``) in the reprs of
  the gateway and its settings, ``check()``/``ping()``, any result, query or receipt, anything
  printed or logged (any logger, DEBUG up);
* ``check_timeouts`` — against an endpoint that never answers, with ``timeout_s=TIMEOUT_S``, a
  ``RETRYABLE`` result with ``maybe_sent=True`` (in doubt) comes back in time, not a hang;
* ``check_receipts_idempotent`` — each push format parses its sample to the same receipts twice;
  ``send([])``, ``query()`` and ``fetch_receipts()`` on a fresh gateway return lists;
* ``check_batch_limits`` — no HTTP request carries more than ``capabilities.max_batch`` recipients.

A check that does not apply to a case (no ``hanging`` for a gateway without a network) returns
``"skipped: …"``; ``check_gateway`` returns those notes. The kit runs each check in its own event
loop (``asyncio.run``): call it from a plain, synchronous test. It needs no pytest.
"""

from __future__ import annotations

from broadcast.testing.case import MIN_SECRET_LEN, GatewayCase, sample_items, silent_endpoint
from broadcast.testing.checks import (
    CHECKS,
    TIMEOUT_S,
    check_batch_limits,
    check_declarations,
    check_failures_classified,
    check_gateway,
    check_no_secret_leaks,
    check_receipts_idempotent,
    check_results_in_order,
    check_split_not_dropped,
    check_timeouts,
)

__all__ = [
    "CHECKS",
    "MIN_SECRET_LEN",
    "TIMEOUT_S",
    "GatewayCase",
    "check_batch_limits",
    "check_declarations",
    "check_failures_classified",
    "check_gateway",
    "check_no_secret_leaks",
    "check_receipts_idempotent",
    "check_results_in_order",
    "check_split_not_dropped",
    "check_timeouts",
    "sample_items",
    "silent_endpoint",
]
