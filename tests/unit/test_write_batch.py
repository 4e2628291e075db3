"""The deferred read-model writes keep each row's writes in order while running every
statement once per layer."""

from libs.runtime.db import Sql
from libs.runtime.writes import WriteBatch

INSERT = Sql("INSERT INTO orders (order_id, status) VALUES (:id, :status)")
SET_STATUS = Sql("UPDATE orders SET status = :status WHERE order_id = :id")
ADD_RESERVED = Sql("UPDATE stock SET reserved = reserved + :delta WHERE sku = :sku")


def test_writes_to_different_rows_share_one_statement_per_layer() -> None:
    batch = WriteBatch()
    for order_id in ("a", "b", "c"):
        batch.add(INSERT, {"id": order_id, "status": "placed"}, ("order", order_id))
        batch.add(SET_STATUS, {"id": order_id, "status": "approved"}, ("order", order_id))

    layers = batch.layers()

    assert layers == [
        {INSERT: [("a", "placed"), ("b", "placed"), ("c", "placed")]},
        {SET_STATUS: [("approved", "a"), ("approved", "b"), ("approved", "c")]},
    ]


def test_writes_to_one_row_keep_the_order_they_were_added_in() -> None:
    batch = WriteBatch()
    batch.add(ADD_RESERVED, {"sku": "hot", "delta": 5}, ("stock", "hot"))
    batch.add(ADD_RESERVED, {"sku": "cold", "delta": 1}, ("stock", "cold"))
    batch.add(ADD_RESERVED, {"sku": "hot", "delta": -5}, ("stock", "hot"))
    batch.add(SET_STATUS, {"id": "a", "status": "approved"}, ("order", "a"))

    layers = batch.layers()

    # The release of "hot" must not run before its allocation (reserved >= 0 would reject it).
    assert layers == [
        {ADD_RESERVED: [(5, "hot"), (1, "cold")], SET_STATUS: [("approved", "a")]},
        {ADD_RESERVED: [(-5, "hot")]},
    ]
    assert len(batch) == 4


def test_a_queued_write_can_be_amended_only_while_it_is_the_rows_last() -> None:
    batch = WriteBatch()
    batch.add(INSERT, {"id": "a", "status": "placed"}, ("order", "a"))

    queued = batch.queued(INSERT, ("order", "a"))
    assert queued is not None
    queued["status"] = "approved"  # the row is inserted as it stands after the later event

    batch.add(SET_STATUS, {"id": "a", "status": "confirmed"}, ("order", "a"))
    assert batch.queued(INSERT, ("order", "a")) is None  # an update follows it now
    assert batch.queued(INSERT, ("order", "b")) is None
    assert batch.layers() == [{INSERT: [("a", "approved")]}, {SET_STATUS: [("confirmed", "a")]}]
