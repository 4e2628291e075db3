"""Receiving a return's goods (the order service's ReceiveReturnedGoods): restock, write off,
answer; all in the consumer's unit of work, once per return."""

from __future__ import annotations

from libs.events import Decoded
from libs.events.inventory import ReceiveReturnedGoods
from libs.runtime.uow import UnitOfWork
from services.inventory.app.handlers import LoadedSkus, receive_stock
from services.inventory.domain.returns import (
    RETURN_RECEIPT,
    decide_booked,
    decide_write_offs,
    receipt_id_for,
    restocked,
)


async def receive_returned_goods(uow: UnitOfWork, decoded: Decoded) -> None:
    command = decoded.message
    if not isinstance(command, ReceiveReturnedGoods):  # routed by type, so a bug if it happens
        raise TypeError(f"receive_returned_goods was given a {type(command).__name__}")
    state, version = await uow.load(RETURN_RECEIPT, command.return_id)
    answer = decide_booked(state, command)
    if not answer:
        return  # booked before
    for back in restocked(command):
        # A receipt like any other: on hand again, and the SKU's backorders served from it.
        receipt_id = receipt_id_for(command.return_id, back.sku, back.warehouse)
        await receive_stock(uow, back.sku, back.warehouse, back.quantity, receipt_id)
    skus = LoadedSkus()
    write_offs = decide_write_offs(command)
    await skus.ensure(uow, write_offs)
    for sku, events in write_offs.items():
        await skus.record(uow, sku, events)
    await uow.record(RETURN_RECEIPT, command.return_id, version, answer)
