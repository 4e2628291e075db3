"""The product catalogue: a PUT registers a product, records what changed, or nothing at all."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from libs.events.inventory import ProductRegistered, ProductUpdated
from services.inventory.domain.product import PRODUCT, Product, ProductSpec, decide_put

SPEC = ProductSpec(
    name="Oak table",
    category="furniture",
    unit="piece",
    weight_kg=Decimal("23.500"),
    manufactured=True,
    list_prices={"EUR": Decimal("499.00")},
)


def registered(spec: ProductSpec = SPEC) -> Product:
    return PRODUCT.replay(list(decide_put(Product(), "TABLE-1", spec)))


def test_a_new_product_is_registered_with_everything_it_is() -> None:
    events = decide_put(Product(), "TABLE-1", SPEC)

    assert events == [
        ProductRegistered(
            sku="TABLE-1",
            name="Oak table",
            category="furniture",
            unit="piece",
            weight_kg=Decimal("23.5"),
            manufactured=True,
            list_prices={"EUR": Decimal("499.00")},
        )
    ]


def test_the_product_as_it_already_is_records_nothing() -> None:
    same = replace(SPEC, weight_kg=Decimal("23.5"), list_prices={"EUR": Decimal("499")})

    assert decide_put(registered(), "TABLE-1", same) == []


def test_a_change_is_an_update_naming_the_changed_fields_and_carrying_the_whole_product() -> None:
    changed = replace(
        SPEC, category="tables", list_prices={"EUR": Decimal("449.00"), "GBP": Decimal("399.00")}
    )

    events = decide_put(registered(), "TABLE-1", changed)

    assert events == [
        ProductUpdated(
            sku="TABLE-1",
            changed=("category", "list_prices"),
            name="Oak table",
            category="tables",
            unit="piece",
            weight_kg=Decimal("23.500"),
            manufactured=True,
            list_prices={"EUR": Decimal("449.00"), "GBP": Decimal("399.00")},
        )
    ]


def test_each_field_alone_is_named_when_it_changes() -> None:
    changes: dict[str, Any] = {
        "name": "Walnut table",
        "category": "tables",
        "unit": "set",
        "weight_kg": Decimal("24"),
        "manufactured": False,
        "list_prices": {},
    }
    for field, value in changes.items():
        events = decide_put(registered(), "TABLE-1", replace(SPEC, **{field: value}))

        assert [type(e) for e in events] == [ProductUpdated]
        assert isinstance(events[0], ProductUpdated) and events[0].changed == (field,)


def test_the_product_is_what_its_last_event_says() -> None:
    product = registered()
    changed = replace(SPEC, weight_kg=Decimal("30"))

    after = PRODUCT.replay(
        [*decide_put(Product(), "TABLE-1", SPEC), *decide_put(product, "TABLE-1", changed)]
    )

    assert after.exists and after.weight_kg == Decimal("30") and after.spec == changed
    assert Product().weight_kg is None
