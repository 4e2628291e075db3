"""Where an order belongs for reporting."""

from __future__ import annotations

UNKNOWN_REGION = "unknown"


def order_region(shipping_country: str | None, customer_region: str | None) -> str:
    """The country the order ships to; for an order with no address (a pickup), the region the
    customer gave; else "unknown"."""
    for candidate in (shipping_country, customer_region):
        if candidate and candidate.strip():
            return candidate.strip()
    return UNKNOWN_REGION
