"""Sealing personal fields with a key per customer, and what reads them after an erasure."""

from __future__ import annotations

from decimal import Decimal

import pytest

from libs.domain import NotFound
from libs.events import registry
from libs.events.order import CustomerErased, OrderPlaced
from libs.events.values import Address, CustomerSnapshot, OrderLine, Shipping
from libs.runtime.personal_data import (
    ERASED,
    PersonalDataError,
    SubjectKeys,
    blind_index,
    new_key,
    seal,
    unseal,
)
from services.order.adapters.personal_data import opened_payload, sealed_customer, sealed_shipping
from services.order.domain import customer as customer_domain
from services.order.domain.order import ORDER

ADA = CustomerSnapshot(name="Ada Lovelace", email="ada@example.com", phone="+44 20 7946 0958", region="north")
ADDRESS = Address(line1="12 St James's Square", city="London", postal_code="SW1Y 4LE", country="GB")


def test_a_sealed_field_opens_with_its_key_and_shows_no_plaintext() -> None:
    key = new_key("c-1")

    sealed = seal(key, "ada@example.com")

    assert sealed is not None and sealed.startswith("pd:v1:")
    assert "ada" not in sealed
    assert unseal(key, sealed) == "ada@example.com"


def test_sealing_the_same_value_twice_gives_different_ciphertexts() -> None:
    key = new_key("c-1")

    assert seal(key, "Ada") != seal(key, "Ada")


def test_plaintext_written_before_sealing_reads_as_itself_even_after_erasure() -> None:
    assert unseal(new_key("c-1"), "Ada Lovelace") == "Ada Lovelace"
    assert unseal(None, "Ada Lovelace") == "Ada Lovelace"
    assert unseal(None, None) is None


def test_a_field_whose_key_is_destroyed_reads_as_erased() -> None:
    sealed = seal(new_key("c-1"), "Ada")

    assert unseal(None, sealed) == ERASED


def test_a_key_created_after_an_erasure_does_not_open_what_the_old_one_sealed() -> None:
    sealed = seal(new_key("c-1"), "Ada")

    assert unseal(new_key("c-1"), sealed) == ERASED


def test_a_tampered_field_is_an_error_not_an_erasure() -> None:
    key = new_key("c-1")
    sealed = seal(key, "Ada")
    assert sealed is not None
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")

    with pytest.raises(PersonalDataError):
        unseal(key, tampered)


def test_a_field_sealed_for_one_customer_does_not_open_as_anothers() -> None:
    key = new_key("c-1")
    other = type(key)("c-2", key.key_id, key.secret)  # same key bytes, another subject

    with pytest.raises(PersonalDataError):
        unseal(other, seal(key, "Ada"))


def test_blind_index_is_equal_for_equal_contacts_and_depends_on_the_secret() -> None:
    first = blind_index(b"s" * 32, "email", "ada@example.com")

    assert first == blind_index(b"s" * 32, "email", "ada@example.com")
    assert first != blind_index(b"t" * 32, "email", "ada@example.com")
    assert first != blind_index(b"s" * 32, "phone", "ada@example.com")
    assert first is not None and "ada" not in first
    assert blind_index(b"s" * 32, "email", None) is None


def test_key_cache_forgets_after_its_ttl() -> None:
    now = [0.0]
    keys = SubjectKeys(ttl=30, clock=lambda: now[0])
    key = new_key("c-1")
    keys.remember("c-1", key)

    assert keys._cached("c-1") == (key, True)
    now[0] = 30.0
    assert keys._cached("c-1") == (None, False)


def placed(customer: CustomerSnapshot, shipping: Shipping) -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        channel="web",
        customer_id="c-1",
        customer=customer,
        lines=(OrderLine(sku="SKU-A", quantity=2, unit_price=Decimal("25.00")),),
        currency="EUR",
        payment_terms="prepaid",
        shipping=shipping,
        subtotal=Decimal("50.00"),
    )


def test_the_longest_contact_a_channel_may_send_fits_sealed_in_the_stored_event() -> None:
    key = new_key("c-1")
    longest = CustomerSnapshot(name="é" * 200, email="a" * 320, phone="9" * 40, region="r" * 40)
    address = Address(line1="é" * 200, line2="é" * 200, city="é" * 100, postal_code="9" * 20, country="GB")
    event = placed(
        sealed_customer(key, longest), sealed_shipping(key, Shipping(method="standard", address=address))
    )

    loaded = registry.load("OrderPlaced", 1, event.model_dump(mode="json"))

    assert loaded == event
    assert unseal(key, loaded.customer.name) == "é" * 200


def test_an_order_placed_with_sealed_contact_replays_after_erasure_with_amounts_region_and_country() -> None:
    key = new_key("c-1")
    event = placed(
        sealed_customer(key, ADA), sealed_shipping(key, Shipping(method="standard", address=ADDRESS))
    )
    stored = event.model_dump(mode="json")

    order = ORDER.replay([registry.load("OrderPlaced", 1, stored)])  # type: ignore[list-item]
    opened = opened_payload(None, "OrderPlaced", stored)

    assert order.status == "placed" and order.placed is not None
    assert order.placed.subtotal == Decimal("50.00")
    assert opened["customer"] == {**stored["customer"], "name": ERASED, "email": ERASED, "phone": ERASED}
    assert opened["customer"]["region"] == "north"
    assert opened["shipping"]["address"]["country"] == "GB"
    assert opened["shipping"]["address"]["line1"] == ERASED
    assert opened_payload(key, "OrderPlaced", stored)["customer"]["email"] == "ada@example.com"


def test_an_order_placed_before_sealing_still_loads() -> None:
    stored = placed(ADA, Shipping(method="standard", address=ADDRESS)).model_dump(mode="json")

    loaded = registry.load("OrderPlaced", 1, stored)

    assert loaded.customer.email == "ada@example.com"  # type: ignore[attr-defined]
    assert opened_payload(None, "OrderPlaced", stored)["customer"]["name"] == "Ada Lovelace"


def test_erasing_a_guest_is_recorded_with_its_actor_and_once_only() -> None:
    state = customer_domain.Customer()

    events = customer_domain.decide_erase(state, "guest:o-1", True, "asked by the customer", "user:dpo")
    erased = customer_domain.CUSTOMER.replay(events)

    assert events == [
        CustomerErased(customer_id="guest:o-1", reason="asked by the customer", erased_by="user:dpo")
    ]
    assert customer_domain.decide_erase(erased, "guest:o-1", True, "again", "user:dpo") == []


def test_erasing_a_customer_nobody_knows_is_refused() -> None:
    with pytest.raises(NotFound):
        customer_domain.decide_erase(customer_domain.Customer(), "nobody", False, "why", "user:dpo")
