"""The customer aggregate at the order desk: recognition, changes and merges (pure)."""

from __future__ import annotations

import pytest

from libs.domain import DomainError, InvalidRequest
from libs.events.order import CustomerAbsorbed, CustomerDetailsChanged, CustomerMerged, CustomerRegistered
from services.order.domain.customer import (
    CUSTOMER,
    Customer,
    checked_email,
    checked_phone,
    decide_change,
    decide_merge,
    normalise_email,
    normalise_phone,
)


def registered(customer_id: str = "c-1", email: str | None = "ada@example.org") -> Customer:
    return CUSTOMER.replay(
        [CustomerRegistered(customer_id=customer_id, name="Ada Lovelace", email=email, region="north")]
    )


@pytest.mark.parametrize("written", ["+44 161 555 0199", "0044 161 5550199", "+44 (0)161-555-0199"])
def test_a_phone_with_its_country_code_is_normalised_to_e164(written: str) -> None:
    assert normalise_phone(written) == "+441615550199"


def test_a_phone_without_a_country_code_keeps_its_digits_as_before() -> None:
    assert normalise_phone("0161 555 0199") == "01615550199"


def test_emails_compare_case_insensitively() -> None:
    assert normalise_email("  Ada@Example.ORG ") == normalise_email("ada@example.org") == "ada@example.org"


def test_the_desk_refuses_a_phone_without_country_code_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        checked_phone("0161 555")
    assert refused.value.details["errors"][0]["field"] == "phone"  # type: ignore[attr-defined]


def test_the_desk_refuses_an_email_without_a_domain_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        checked_email("ada@localhost")
    assert refused.value.details["errors"][0]["field"] == "email"  # type: ignore[attr-defined]


def test_a_change_records_only_the_fields_that_differ() -> None:
    state = registered()

    events = decide_change(state, "c-1", {"email": "ada@example.org", "region": "south"}, "olga")

    assert events == [
        CustomerDetailsChanged(customer_id="c-1", changed=("region",), region="south", changed_by="olga")
    ]
    assert CUSTOMER.evolve(state, events[0]).region == "south"


def test_the_same_change_again_records_nothing() -> None:
    assert decide_change(registered(), "c-1", {"email": "ada@example.org"}, "olga") == []


def test_merging_records_an_event_on_both_and_points_the_duplicate_at_the_survivor() -> None:
    duplicate, survivor = registered("c-2"), registered("c-1")

    on_duplicate, on_survivor = decide_merge(duplicate, survivor, "c-2", "c-1", "same person", "olga")

    assert on_duplicate == [
        CustomerMerged(customer_id="c-2", into="c-1", reason="same person", merged_by="olga")
    ]
    assert on_survivor == [
        CustomerAbsorbed(customer_id="c-1", merged_from="c-2", reason="same person", merged_by="olga")
    ]
    merged = CUSTOMER.evolve(duplicate, on_duplicate[0])
    assert merged.merged_into == "c-1"
    # The same merge again changes nothing; a change to the merged customer is refused.
    assert decide_merge(merged, survivor, "c-2", "c-1", "again", "olga") == ([], [])
    with pytest.raises(DomainError, match="merged into c-1"):
        decide_change(merged, "c-2", {"region": "east"}, "olga")


def test_merging_into_a_customer_that_was_itself_merged_names_where_it_went() -> None:
    gone = CUSTOMER.evolve(
        registered("c-1"), CustomerMerged(customer_id="c-1", into="c-9", reason="x", merged_by="o")
    )

    with pytest.raises(DomainError, match="merged into c-9"):
        decide_merge(registered("c-2"), gone, "c-2", "c-1", "same person", "olga")
