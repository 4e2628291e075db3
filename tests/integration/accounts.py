"""On-account customers set up the way a merchant does it: finance grants a credit limit
through billing's credit-limit endpoint, and the order comes from a channel that offers
on-account terms, naming the customer by the id finance granted the credit to."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from tests.integration.conftest import Oms

# One of the channels that offer on-account terms under the default OM_ORDER_ON_ACCOUNT_CHANNELS.
ACCOUNT_CHANNEL = "b2b"
# The intake topic's on-account channel: an ERP system submitting orders keyed in elsewhere.
INTAKE_ACCOUNT_CHANNEL = "erp"


async def grant_credit(oms: Oms, customer_id: str, credit_limit: str = "10000.00") -> None:
    response = await oms.billing.put(
        f"/customers/{customer_id}/credit-limit", json={"credit_limit": credit_limit}
    )
    assert response.status_code in (200, 201), response.text


async def account_customer(
    oms: Oms, credit_limit: str = "10000.00", name: str = "Ada Lovelace"
) -> dict[str, Any]:
    """A customer finance granted `credit_limit` to, as the channel names them in an order."""
    customer_id = f"acct-{uuid4().hex[:10]}"
    await grant_credit(oms, customer_id, credit_limit)
    return {"id": customer_id, "name": name, "email": f"{customer_id}@example.com", "region": "north"}


async def account_customers(oms: Oms, count: int) -> list[dict[str, Any]]:
    """`count` different account customers: the same order for the same customer twice is
    held as a possible duplicate, so a burst of orders needs one customer each."""
    return list(await asyncio.gather(*(account_customer(oms) for _ in range(count))))
