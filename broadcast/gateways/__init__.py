"""SMS gateways: the plugin interface (``base``), the registry (``registry``) and the built-ins.

Built-ins register through the ``broadcast.gateways`` entry-point group exactly like a third-party
package would. Importing this package is cheap: the interface names below are loaded on first
use (``from broadcast.gateways import Gateway``), so the stdlib-only ``mockserver`` starts without
httpx or pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broadcast.gateways.base import (
        Capabilities,
        Gateway,
        Outcome,
        Receipt,
        SendItem,
        SendResult,
        make_client,
    )

__all__ = ["Capabilities", "Gateway", "Outcome", "Receipt", "SendItem", "SendResult", "make_client"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from broadcast.gateways import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
