"""The price of an SMS part through each gateway, and what each provider bills.

* **Price**: ``BROADCAST_PRICE_<GATEWAY>`` in yuan per SMS part (``BROADCAST_PRICE_ALIYUN=0.045``),
  from the office's contract or price list. A gateway without one has no known price: costs
  through it are reported as unknown (their parts are counted), never as zero.
* **Billing rule** (``Capabilities.billing``, or ``BROADCAST_BILLING_<GATEWAY>``): ``submitted`` —
  every part the provider accepted is billed, delivered or not; ``delivered`` — parts that a carrier's
  receipt reports undelivered are not billed. Parts a provider never accepted (refused at submit,
  never sent, expired, over the per-number cap) are billed by no provider.

A delivery bills ``parts`` (counted with the signature when it was frozen) at the price of the
gateway that carried it (``deliveries.gateway``: after a failover, the one that took it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from broadcast.config import BILLING_RULES, Settings, gateway_key
from broadcast.errors import ConfigError

__all__ = ["BILLING_RULES", "PriceBook", "billing_of", "price_of", "price_var"]


def price_var(gateway: str) -> str:
    """The setting that holds a gateway's price: ``BROADCAST_PRICE_ALIYUN``."""
    return f"BROADCAST_PRICE_{gateway_key(gateway).upper()}"


def price_of(settings: Settings, gateway: str) -> Decimal | None:
    """Yuan per SMS part through ``gateway``; None when ``BROADCAST_PRICE_<GATEWAY>`` is not set."""
    return settings.prices.get(gateway_key(gateway))


def billing_of(settings: Settings, gateway: str) -> str:
    """``submitted`` or ``delivered``: ``BROADCAST_BILLING_<GATEWAY>``, else what the gateway
    declares, else ``submitted`` (a gateway that is not installed: count every accepted part)."""
    override = settings.billing_overrides.get(gateway_key(gateway))
    if override:
        return override
    from broadcast.gateways import registry

    try:
        rule = registry.load(gateway).capabilities.billing
    except ConfigError:
        return "submitted"
    return rule if rule in BILLING_RULES else "submitted"


@dataclass
class PriceBook:
    """Prices and billing rules of one command, looked up once per gateway."""

    settings: Settings
    _rules: dict[str, str] = field(default_factory=dict)

    def price(self, gateway: str) -> Decimal | None:
        return price_of(self.settings, gateway)

    def billing(self, gateway: str) -> str:
        if gateway not in self._rules:
            self._rules[gateway] = billing_of(self.settings, gateway)
        return self._rules[gateway]

    def billed(self, gateway: str, taken: int, undelivered: int) -> int:
        """Billed parts of ``taken`` (accepted or delivered) and ``undelivered`` (accepted, then
        reported undelivered by the carrier) parts through ``gateway``."""
        return taken + (undelivered if self.billing(gateway) == "submitted" else 0)
