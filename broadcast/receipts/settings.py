"""``BROADCAST_RECEIPTS_*``: defined beside the gateways (Twilio's callback check needs the public
URL, and gateways sit below receipts), re-exported here where the endpoint's code looks for them."""

from broadcast.gateways.receipts_settings import ReceiptsSettings, load_receipts_settings

__all__ = ["ReceiptsSettings", "load_receipts_settings"]
