"""The order desk's changes to invoices: amendments (AdjustInvoice), splits and merges
(MoveInvoiceLines). Money paid is kept, refunded or carried over, never created or lost."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from libs.events.base import DomainEvent
from libs.events.billing import (
    AdjustInvoice,
    CreditCharged,
    CreditLimitOverridden,
    CreditLimitSet,
    CreditReleased,
    InvoiceAdjusted,
    InvoiceAdjustmentRefused,
    InvoiceIssued,
    InvoiceMove,
    InvoicePaid,
    InvoiceVoided,
    IssueReturnCredit,
    MoveInvoiceLines,
    PaymentReceived,
    RefundIssued,
)
from libs.events.values import OrderLine, PaymentTerms, ShippingMethod, SkuQuantity
from services.billing.domain.account import CustomerAccount
from services.billing.domain.amendments import (
    MoveDecision,
    change_credit_note_id_for,
    decide_adjustment,
    decide_move,
    supplementary_invoice_id_for,
    transfer_reference,
)
from services.billing.domain.invoice import INVOICE, Invoice, PaymentAttempt, decide_payment
from services.billing.domain.refunds import decide_goodwill_refund, decide_return_credit
from services.billing.tests.examples import (
    CUSTOMER,
    DUE,
    ORDER,
    POLICY,
    account_after,
    invoice_after,
    issue_command,
    issued,
    line,
)

D = Decimal
TARGET = "ORD-NEW"


def adjust(
    *lines: OrderLine,
    amendment_id: str = "AMD-1",
    shipping: ShippingMethod = "pickup",
    overridden_by: str | None = None,
    order_id: str = ORDER,
) -> AdjustInvoice:
    return AdjustInvoice(
        order_id=order_id,
        amendment_id=amendment_id,
        lines=lines,
        shipping_method=shipping,
        due_at=DUE,
        credit_limit_overridden_by=overridden_by,
    )


def paid(invoice: Invoice, amount: str, reference: str = "PAY-1") -> Invoice:
    attempt = PaymentAttempt(invoice.order_id, reference, "card", D(amount), "succeeded")
    return fold(invoice, decide_payment(invoice, CustomerAccount(), attempt).invoice)


def fold(invoice: Invoice, events: list[DomainEvent]) -> Invoice:
    for event in events:
        invoice = INVOICE.evolve(invoice, event)
    return invoice


def invoice_for(
    *lines: OrderLine,
    order_id: str = ORDER,
    terms: PaymentTerms = "prepaid",
    shipping: ShippingMethod = "pickup",
) -> Invoice:
    command = issue_command(*lines, order_id=order_id, terms=terms, shipping=shipping)
    return invoice_after(*[e for e in issued(command) if e.aggregate_type == "invoice"])


def refunded(events: list[DomainEvent]) -> Decimal:
    return sum((e.amount for e in events if isinstance(e, RefundIssued)), D(0))


def kept(invoices: Mapping[str, Invoice]) -> Decimal:
    """Paid and not refunded, over the invoices: what a change must carry over or refund."""
    return sum((invoice.refundable for invoice in invoices.values()), D(0))


# -- amend ---------------------------------------------------------------------------------


def test_amending_an_unpaid_order_up_issues_a_supplementary_invoice_for_the_difference() -> None:
    invoice = invoice_for(line("SKU-1", 1, "100.00"))  # 120.00

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 2, "100.00")), CustomerAccount(), POLICY)

    [adjusted] = decision.invoice
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.previous_total, adjusted.total, adjusted.difference) == (
        D("120.00"),
        D("240.00"),
        D("120.00"),
    )
    assert adjusted.document_id == supplementary_invoice_id_for(ORDER, "AMD-1")
    assert adjusted.document_id.startswith("SUP-")
    assert (adjusted.outstanding, adjusted.status, adjusted.refund_id) == (D("240.00"), "open", None)
    assert [line.quantity for line in adjusted.lines] == [2]
    after = fold(invoice, decision.invoice)
    assert (after.total, after.outstanding, after.subtotal, after.tax) == (
        D("240.00"),
        D("240.00"),
        D("200.00"),
        D("40.00"),
    )


def test_amending_a_paid_order_up_keeps_the_payment_and_owes_the_difference() -> None:
    invoice = paid(invoice_for(line("SKU-1", 1, "100.00")), "120.00")
    assert invoice.status == "paid"

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 2, "100.00")), CustomerAccount(), POLICY)

    [adjusted] = decision.invoice
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.amount_paid, adjusted.outstanding, adjusted.status) == (D("120.00"), D("120.00"), "open")
    after = fold(invoice, decision.invoice)
    assert (after.status, after.amount_paid, after.outstanding) == ("open", D("120.00"), D("120.00"))
    # The customer pays the difference, and the invoice is paid again.
    settled = decide_payment(
        after, CustomerAccount(), PaymentAttempt(ORDER, "PAY-2", "card", D("120.00"), "succeeded")
    )
    assert [type(e) for e in settled.invoice] == [PaymentReceived, InvoicePaid]


def test_amending_a_paid_order_down_refunds_exactly_what_was_paid_beyond_the_new_total() -> None:
    invoice = paid(invoice_for(line("SKU-1", 2, "100.00")), "240.00")

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), CustomerAccount(), POLICY)

    adjusted, refund = decision.invoice  # paid before, paid after: no second InvoicePaid
    assert isinstance(adjusted, InvoiceAdjusted) and isinstance(refund, RefundIssued)
    credit_note = change_credit_note_id_for(ORDER, "AMD-1")
    assert (adjusted.difference, adjusted.document_id, adjusted.status) == (D("-120.00"), credit_note, "paid")
    assert (refund.amount, refund.credit_note_id, refund.refund_id) == (
        D("120.00"),
        credit_note,
        adjusted.refund_id,
    )
    assert adjusted.refund_amount == D("120.00") and adjusted.amount_paid == D("240.00")
    after = fold(invoice, decision.invoice)
    assert (after.refundable, after.outstanding, after.status) == (D("120.00"), D("0.00"), "paid")


def test_amending_a_partly_paid_order_below_what_was_paid_refunds_the_excess_and_marks_it_paid() -> None:
    invoice = paid(invoice_for(line("SKU-1", 2, "100.00")), "150.00")  # of 240.00

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), CustomerAccount(), POLICY)

    assert [type(e) for e in decision.invoice] == [InvoiceAdjusted, RefundIssued, InvoicePaid]
    assert refunded(decision.invoice) == D("30.00")
    assert fold(invoice, decision.invoice).status == "paid"


def test_amending_an_unpaid_order_down_refunds_nothing() -> None:
    invoice = invoice_for(line("SKU-1", 2, "100.00"))

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), CustomerAccount(), POLICY)

    [adjusted] = decision.invoice
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.refund_id, adjusted.outstanding, adjusted.status) == (None, D("120.00"), "open")


def test_an_amendment_that_changes_no_amount_has_no_document() -> None:
    invoice = invoice_for(line("SKU-1", 1, "100.00"))

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), CustomerAccount(), POLICY)

    [adjusted] = decision.invoice
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.document_id, adjusted.difference) == (None, D("0.00"))


def test_an_amendment_is_priced_as_an_invoice_is_with_the_new_shipping_method() -> None:
    invoice = invoice_for(line("SKU-1", 1, "100.00"))

    decision = decide_adjustment(
        invoice, adjust(line("SKU-1", 1, "100.00"), shipping="express"), CustomerAccount(), POLICY
    )

    [adjusted] = decision.invoice
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.shipping_fee, adjusted.total) == (D("14.90"), D("137.88"))  # (100 + 14.90) * 1.2


def test_a_repeated_amendment_changes_nothing() -> None:
    invoice = paid(invoice_for(line("SKU-1", 2, "100.00")), "240.00")
    command = adjust(line("SKU-1", 1, "100.00"))
    after = fold(invoice, decide_adjustment(invoice, command, CustomerAccount(), POLICY).invoice)

    again = decide_adjustment(after, command, CustomerAccount(), POLICY)

    assert again.invoice == [] and again.account == []


def test_amending_on_account_up_past_the_credit_limit_is_refused_and_changes_nothing() -> None:
    history = issued(issue_command(line("SKU-1", 1, "100.00"), terms="on_account"))
    invoice = invoice_after(*history[:1])
    account = account_after(CreditLimitSet(customer_id=CUSTOMER, credit_limit=D("200.00")), *history[1:])

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 2, "100.00")), account, POLICY)

    assert decision.invoice == [
        InvoiceAdjustmentRefused(
            order_id=ORDER,
            amendment_id="AMD-1",
            reason="credit limit: 120.00 more would take the open balance 120.00 over the limit 200.00",
            amount=D("120.00"),
            open_balance=D("120.00"),
            credit_limit=D("200.00"),
        )
    ]
    assert decision.account == []


def test_amending_on_account_up_with_finance_s_override_charges_the_difference_anyway() -> None:
    history = issued(issue_command(line("SKU-1", 1, "100.00"), terms="on_account"))
    invoice = invoice_after(*history[:1])
    account = account_after(CreditLimitSet(customer_id=CUSTOMER, credit_limit=D("200.00")), *history[1:])

    decision = decide_adjustment(
        invoice, adjust(line("SKU-1", 2, "100.00"), overridden_by="user:fiona"), account, POLICY
    )

    assert [type(e) for e in decision.invoice] == [InvoiceAdjusted]
    assert decision.account == [
        CreditLimitOverridden(
            customer_id=CUSTOMER,
            order_id=ORDER,
            amount=D("120.00"),
            open_balance=D("120.00"),
            credit_limit=D("200.00"),
            approved_by="user:fiona",
        ),
        CreditCharged(customer_id=CUSTOMER, order_id=ORDER, amount=D("120.00")),
    ]


def test_amending_on_account_down_releases_the_difference_s_credit() -> None:
    history = issued(issue_command(line("SKU-1", 2, "100.00"), terms="on_account"))
    invoice, account = invoice_after(*history[:1]), account_after(*history[1:])

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), account, POLICY)

    assert decision.account == [CreditReleased(customer_id=CUSTOMER, order_id=ORDER, amount=D("120.00"))]
    assert account_after(*history[1:], *decision.account).open_balance == D("120.00")


def test_a_void_invoice_cannot_be_amended() -> None:
    invoice = fold(
        invoice_for(line("SKU-1", 1, "100.00")), [InvoiceVoided(order_id=ORDER, invoice_id="x", reason="r")]
    )

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 2, "100.00")), CustomerAccount(), POLICY)

    [refused] = decision.invoice
    assert isinstance(refused, InvoiceAdjustmentRefused)
    assert refused.reason == f"order {ORDER} cannot be amended in billing: the invoice is void"


def test_an_amendment_s_refund_never_exceeds_what_is_left_after_a_goodwill_refund() -> None:
    invoice = paid(invoice_for(line("SKU-1", 2, "100.00")), "240.00")
    invoice = fold(invoice, decide_goodwill_refund(invoice, ORDER, D("200.00"), "sorry", "RFD-G").invoice)

    decision = decide_adjustment(invoice, adjust(line("SKU-1", 1, "100.00")), CustomerAccount(), POLICY)

    assert refunded(decision.invoice) == D("40.00")  # 120.00 paid beyond, only 40.00 left to give
    assert fold(invoice, decision.invoice).refundable == D("0.00")


def test_a_return_after_an_amendment_is_credited_at_the_amended_lines_value() -> None:
    # Amended from 3 to 2 units at a new price; a return of 3 credits the 2 the invoice has now.
    invoice = paid(invoice_for(line("SKU-1", 3, "10.00")), "36.00")
    invoice = fold(
        invoice,
        decide_adjustment(invoice, adjust(line("SKU-1", 2, "12.00")), CustomerAccount(), POLICY).invoice,
    )
    assert invoice.refundable == D("28.80")  # 36.00 paid, 7.20 refunded by the amendment

    credit = IssueReturnCredit(
        order_id=ORDER, return_id="RET-1", lines=(SkuQuantity(sku="SKU-1", quantity=3),), reason="r"
    )
    decision = decide_return_credit(invoice, credit)

    note = decision.invoice[0]
    assert note.lines == (SkuQuantity(sku="SKU-1", quantity=2),)  # type: ignore[attr-defined]
    assert refunded(decision.invoice) == D("28.80")


# -- split -----------------------------------------------------------------------------------


def move(
    kind: str,
    *sources: tuple[str, tuple[tuple[str, int], ...]],
    lines: tuple[OrderLine, ...] = (),
    terms: PaymentTerms = "prepaid",
    shipping: ShippingMethod = "pickup",
    move_id: str = "MOVE-1",
) -> MoveInvoiceLines:
    return MoveInvoiceLines(
        order_id=TARGET,
        move_id=move_id,
        kind=kind,  # type: ignore[arg-type]
        sources=tuple(
            InvoiceMove(from_order_id=order_id, lines=tuple(SkuQuantity(sku=s, quantity=q) for s, q in moved))
            for order_id, moved in sources
        ),
        customer_id=CUSTOMER,
        currency="EUR",
        payment_terms=terms,
        lines=lines or tuple(line(s, q, "1.00") for _, moved in sources for s, q in moved),
        shipping_method=shipping,
        due_at=DUE,
    )


def applied(decision: MoveDecision, invoices: Mapping[str, Invoice]) -> dict[str, Invoice]:
    return {
        order_id: fold(invoices.get(order_id, Invoice()), decision.invoices.get(order_id, []))
        for order_id in {*invoices, *decision.invoices}
    }


def two_line_order() -> Invoice:
    """2 x SKU-A at 50.00 and 1 x SKU-B at 100.00, standard shipping: (200 + 4.90) * 1.2 = 245.88."""
    return invoice_for(line("SKU-A", 2, "50.00"), line("SKU-B", 1, "100.00"), shipping="standard")


def test_splitting_a_paid_order_moves_the_lines_at_their_invoiced_value_with_the_money_paid_for_them() -> (
    None
):
    source = paid(two_line_order(), "245.88")
    command = move("split", (ORDER, (("SKU-B", 1),)))

    decision = decide_move(Invoice(), {ORDER: source}, command, {}, POLICY)

    adjusted, *more = decision.invoices[ORDER]
    assert more == []  # paid before and after
    assert isinstance(adjusted, InvoiceAdjusted)
    assert (adjusted.total, adjusted.difference, adjusted.transferred) == (
        D("125.88"),
        D("-120.00"),
        D("120.00"),
    )
    assert (adjusted.moved_to, adjusted.amount_paid, adjusted.status) == (TARGET, D("125.88"), "paid")
    assert adjusted.document_id == change_credit_note_id_for(ORDER, "MOVE-1")
    assert (adjusted.shipping_fee, adjusted.subtotal) == (D("4.90"), D("100.00"))  # the fee stays
    assert [(line.sku, line.quantity) for line in adjusted.lines] == [("SKU-A", 2)]
    issued_event, transfer, paid_event = decision.invoices[TARGET]
    assert isinstance(issued_event, InvoiceIssued)
    assert (issued_event.total, issued_event.shipping_fee) == (D("120.00"), D("0.00"))
    assert [(line.sku, line.quantity, line.gross) for line in issued_event.lines] == [
        ("SKU-B", 1, D("120.00"))
    ]
    assert transfer == PaymentReceived(
        order_id=TARGET,
        invoice_id=issued_event.invoice_id,
        reference=transfer_reference("MOVE-1", ORDER),
        method="transfer",
        amount=D("120.00"),
        amount_paid=D("120.00"),
    )
    assert isinstance(paid_event, InvoicePaid)
    after = applied(decision, {ORDER: source})
    assert kept(after) == kept({ORDER: source})  # not a cent created or lost
    assert after[ORDER].total + after[TARGET].total == source.total


def test_splitting_part_of_a_line_divides_its_amounts_without_losing_a_cent() -> None:
    source = invoice_for(line("SKU-A", 3, "3.33"))  # gross 11.99 for 3 units
    decision = decide_move(Invoice(), {ORDER: source}, move("split", (ORDER, (("SKU-A", 1),))), {}, POLICY)

    after = applied(decision, {ORDER: source})

    [moved] = after[TARGET].lines
    [kept_line] = after[ORDER].lines
    assert (moved.quantity, kept_line.quantity) == (1, 2)
    assert moved.gross + kept_line.gross == D("11.99")  # type: ignore[operator]
    assert moved.net + kept_line.net == D("9.99")  # type: ignore[operator]
    assert after[ORDER].total + after[TARGET].total == source.total


def test_splitting_an_unpaid_order_carries_no_money_and_both_still_owe() -> None:
    source = two_line_order()

    decision = decide_move(Invoice(), {ORDER: source}, move("split", (ORDER, (("SKU-B", 1),))), {}, POLICY)

    assert [type(e) for e in decision.invoices[TARGET]] == [InvoiceIssued]
    after = applied(decision, {ORDER: source})
    assert (after[ORDER].outstanding, after[TARGET].outstanding) == (D("125.88"), D("120.00"))


def test_splitting_a_partly_paid_order_carries_what_the_source_no_longer_needs() -> None:
    source = paid(two_line_order(), "200.00")

    decision = decide_move(Invoice(), {ORDER: source}, move("split", (ORDER, (("SKU-B", 1),))), {}, POLICY)

    # The source now charges 125.88 and keeps that, paid in full; the rest goes to the target.
    assert [type(e) for e in decision.invoices[ORDER]] == [InvoiceAdjusted, InvoicePaid]
    after = applied(decision, {ORDER: source})
    assert (after[ORDER].amount_paid, after[ORDER].status) == (D("125.88"), "paid")
    assert (after[TARGET].amount_paid, after[TARGET].outstanding) == (D("74.12"), D("45.88"))
    assert kept(after) == D("200.00")


def test_splitting_an_on_account_order_moves_its_credit_to_the_new_order() -> None:
    history = issued(issue_command(line("SKU-A", 2, "50.00"), line("SKU-B", 1, "100.00"), terms="on_account"))
    source, account = invoice_after(*history[:1]), account_after(*history[1:])

    decision = decide_move(
        Invoice(),
        {ORDER: source},
        move("split", (ORDER, (("SKU-B", 1),)), terms="on_account"),
        {CUSTOMER: account},
        POLICY,
    )

    assert decision.accounts == {
        CUSTOMER: [
            CreditReleased(customer_id=CUSTOMER, order_id=ORDER, amount=D("120.00")),
            CreditCharged(customer_id=CUSTOMER, order_id=TARGET, amount=D("120.00")),
        ]
    }


# -- merge -----------------------------------------------------------------------------------


def one_line_order(order_id: str) -> Invoice:
    """1 x SKU-A at 50.00, standard shipping: (50 + 4.90) * 1.2 = 65.88."""
    return invoice_for(line("SKU-A", 1, "50.00"), order_id=order_id, shipping="standard")


def merge_of(*order_ids: str, terms: PaymentTerms = "prepaid") -> MoveInvoiceLines:
    return move(
        "merge",
        *((order_id, (("SKU-A", 1),)) for order_id in order_ids),
        lines=(line("SKU-A", len(order_ids), "50.00"),),
        shipping="standard",
        terms=terms,
    )


def test_merging_two_paid_orders_closes_them_and_refunds_the_shipping_fee_saved() -> None:
    first, second = paid(one_line_order("ORD-A"), "65.88"), paid(one_line_order("ORD-B"), "65.88", "PAY-2")
    before = {"ORD-A": first, "ORD-B": second}

    decision = decide_move(Invoice(), before, merge_of("ORD-A", "ORD-B"), {}, POLICY)

    for order_id in before:
        [adjusted] = decision.invoices[order_id]
        assert isinstance(adjusted, InvoiceAdjusted)
        assert (adjusted.status, adjusted.total, adjusted.lines) == ("merged", D("0.00"), ())
        assert (adjusted.transferred, adjusted.amount_paid, adjusted.refund_id) == (
            D("65.88"),
            D("0.00"),
            None,
        )
    target = decision.invoices[TARGET]
    assert [type(e) for e in target] == [
        InvoiceIssued,
        PaymentReceived,
        PaymentReceived,
        InvoicePaid,
        RefundIssued,
    ]
    assert target[0].total == D("125.88")  # type: ignore[attr-defined]  # (100 + one fee of 4.90) * 1.2
    refund = target[-1]
    assert isinstance(refund, RefundIssued)
    assert (refund.amount, refund.credit_note_id) == (D("5.88"), change_credit_note_id_for(TARGET, "MOVE-1"))
    after = applied(decision, before)
    assert kept(before) == kept(after) + refunded(target)
    assert (after["ORD-A"].status, after[TARGET].status, after[TARGET].outstanding) == (
        "merged",
        "paid",
        D("0.00"),
    )


def test_merging_an_unpaid_and_a_paid_order_leaves_the_rest_owed_on_the_merged_invoice() -> None:
    before = {"ORD-A": paid(one_line_order("ORD-A"), "65.88"), "ORD-B": one_line_order("ORD-B")}

    decision = decide_move(Invoice(), before, merge_of("ORD-A", "ORD-B"), {}, POLICY)

    assert [type(e) for e in decision.invoices[TARGET]] == [InvoiceIssued, PaymentReceived]
    after = applied(decision, before)
    assert (after[TARGET].outstanding, after[TARGET].status) == (D("60.00"), "open")


def test_merging_on_account_orders_releases_their_credit_and_charges_the_merged_total_without_a_limit() -> (
    None
):
    first = issued(
        issue_command(line("SKU-A", 1, "50.00"), order_id="ORD-A", terms="on_account", shipping="standard")
    )
    second = issued(
        issue_command(line("SKU-A", 1, "50.00"), order_id="ORD-B", terms="on_account", shipping="standard")
    )
    account = account_after(
        *first[1:], *second[1:], CreditLimitSet(customer_id=CUSTOMER, credit_limit=D("1.00"))
    )
    before = {"ORD-A": invoice_after(*first[:1]), "ORD-B": invoice_after(*second[:1])}

    decision = decide_move(
        Invoice(), before, merge_of("ORD-A", "ORD-B", terms="on_account"), {CUSTOMER: account}, POLICY
    )

    assert decision.accounts[CUSTOMER] == [
        CreditReleased(customer_id=CUSTOMER, order_id="ORD-A", amount=D("65.88")),
        CreditReleased(customer_id=CUSTOMER, order_id="ORD-B", amount=D("65.88")),
        CreditCharged(customer_id=CUSTOMER, order_id=TARGET, amount=D("125.88")),
    ]


def test_a_repeated_move_changes_nothing() -> None:
    before = {"ORD-A": paid(one_line_order("ORD-A"), "65.88"), "ORD-B": one_line_order("ORD-B")}
    command = merge_of("ORD-A", "ORD-B")
    after = applied(decide_move(Invoice(), before, command, {}, POLICY), before)

    again = decide_move(after[TARGET], {k: after[k] for k in before}, command, {}, POLICY)

    assert again == MoveDecision()


def test_a_payment_for_a_merged_order_is_booked_and_given_straight_back() -> None:
    before = {"ORD-A": one_line_order("ORD-A"), "ORD-B": one_line_order("ORD-B")}
    merged = applied(decide_move(Invoice(), before, merge_of("ORD-A", "ORD-B"), {}, POLICY), before)["ORD-A"]

    decision = decide_payment(
        merged, CustomerAccount(), PaymentAttempt("ORD-A", "LATE", "card", D("65.88"), "succeeded")
    )

    received, refund = decision.invoice
    assert isinstance(received, PaymentReceived) and isinstance(refund, RefundIssued)
    assert refund.amount == D("65.88") and f"merged into order {TARGET}" in refund.reason


def test_a_move_from_a_void_order_is_refused_and_changes_nothing() -> None:
    void = fold(one_line_order("ORD-A"), [InvoiceVoided(order_id="ORD-A", invoice_id="x", reason="r")])
    before = {"ORD-A": void, "ORD-B": one_line_order("ORD-B")}

    decision = decide_move(Invoice(), before, merge_of("ORD-A", "ORD-B"), {}, POLICY)

    assert list(decision.invoices) == [TARGET] and decision.accounts == {}
    [refused] = decision.invoices[TARGET]
    assert isinstance(refused, InvoiceAdjustmentRefused)
    assert refused.reason == "order ORD-A cannot be merged in billing: its invoice is void"


def test_a_split_carries_no_more_than_the_source_still_holds_after_a_goodwill_refund() -> None:
    source = paid(two_line_order(), "245.88")
    source = fold(source, decide_goodwill_refund(source, ORDER, D("200.00"), "sorry", "RFD-G").invoice)

    decision = decide_move(Invoice(), {ORDER: source}, move("split", (ORDER, (("SKU-B", 1),))), {}, POLICY)

    after = applied(decision, {ORDER: source})
    assert (after[ORDER].refundable, after[TARGET].amount_paid) == (D("0.00"), D("45.88"))
    assert after[TARGET].outstanding == D("74.12")
    assert kept(after) == kept({ORDER: source})


def test_a_repeated_split_changes_nothing() -> None:
    source = paid(two_line_order(), "245.88")
    command = move("split", (ORDER, (("SKU-B", 1),)))
    after = applied(decide_move(Invoice(), {ORDER: source}, command, {}, POLICY), {ORDER: source})

    assert decide_move(after[TARGET], {ORDER: after[ORDER]}, command, {}, POLICY) == MoveDecision()
