"""Order service settings (OM_ORDER_* variables)."""

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.runtime.currencies import CurrencySettings
from libs.runtime.setting_types import NameSet
from services.order.domain.review import ReviewPolicy
from services.order.domain.saga import SagaPolicy


class OrderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OM_ORDER_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8001
    review_amount_limit: Decimal = Decimal("5000.00")
    # JSON, e.g. {"JPY": 750000}: the review limit in these currencies (others: the one above)
    review_amount_limit_by_currency: dict[str, Decimal] = dict(ReviewPolicy().amount_limit_by_currency)
    list_price_tolerance: Decimal = Decimal("0.10")
    duplicate_window_seconds: int = 600
    payment_deadline_seconds: float = 900
    # JSON, e.g. {"bank-transfer": 259200}: per-channel payment deadlines in seconds
    payment_deadline_seconds_by_channel: dict[str, float] = {}
    # Declined payments a customer may make before the order is cancelled (docs/saga.md).
    max_payment_attempts: Annotated[int, Field(ge=1)] = 3
    on_account_terms_days: int = 30
    # An on-account order over its customer's credit limit: held for finance, or rejected.
    credit_exceeded: Literal["hold", "reject"] = "hold"
    # Channels that may offer on-account terms: a JSON list or a comma list, e.g. b2b,erp,phone.
    # An on-account order from any other channel is rejected at review.
    on_account_channels: NameSet = ReviewPolicy().on_account_channels
    shortage_policy: Literal["backorder", "reject"] = "backorder"
    # JSON, e.g. {"marketplace": "reject"}
    shortage_policy_by_channel: dict[str, Literal["backorder", "reject"]] = {}
    # A backordered order waiting this long needs attention (0: never alert); after the alert
    # it is cancelled another stock_wait_cancel_seconds later, or keeps waiting, by policy.
    stock_wait_alert_seconds: Annotated[float, Field(ge=0)] = 3 * 86400
    stock_wait_after_alert: Literal["cancel", "keep_waiting"] = "cancel"
    stock_wait_cancel_seconds: Annotated[float, Field(ge=0)] = 4 * 86400
    # JSON, e.g. {"marketplace": 86400}: per-channel alert and cancel times in seconds
    stock_wait_alert_seconds_by_channel: dict[str, Annotated[float, Field(gt=0)]] = {}
    stock_wait_cancel_seconds_by_channel: dict[str, Annotated[float, Field(ge=0)]] = {}
    compensation_retry_seconds: float = 30
    compensation_max_attempts: int = 5
    step_reply_seconds: float = 120
    step_max_attempts: int = 3
    # Reserve the stock and invoice at once, the saga waiting for both (docs/saga.md); false:
    # one after the other, as before parallel groups.
    parallel_steps: bool = True
    deadline_poll_seconds: float = 0.2

    def saga_policy(self) -> SagaPolicy:
        return SagaPolicy(
            review=ReviewPolicy(
                amount_limit=self.review_amount_limit,
                amount_limit_by_currency=self.review_amount_limit_by_currency,
                list_price_tolerance=self.list_price_tolerance,
                on_account_channels=self.on_account_channels,
                currencies=CurrencySettings().currencies,
            ),
            payment_deadline=timedelta(seconds=self.payment_deadline_seconds),
            payment_max_attempts=self.max_payment_attempts,
            credit_exceeded=self.credit_exceeded,
            payment_deadline_by_channel=tuple(
                (channel, timedelta(seconds=seconds))
                for channel, seconds in sorted(self.payment_deadline_seconds_by_channel.items())
            ),
            on_account_terms=timedelta(days=self.on_account_terms_days),
            backorder_on_shortage=self.shortage_policy == "backorder",
            shortage_policy_by_channel=tuple(
                (channel, policy == "backorder")
                for channel, policy in sorted(self.shortage_policy_by_channel.items())
            ),
            stock_wait_alert_after=(
                timedelta(seconds=self.stock_wait_alert_seconds) if self.stock_wait_alert_seconds else None
            ),
            stock_wait_cancel_after_alert=(
                timedelta(seconds=self.stock_wait_cancel_seconds)
                if self.stock_wait_after_alert == "cancel"
                else None
            ),
            stock_wait_alert_by_channel=_by_channel(self.stock_wait_alert_seconds_by_channel),
            stock_wait_cancel_by_channel=_by_channel(self.stock_wait_cancel_seconds_by_channel),
            compensation_retry_after=timedelta(seconds=self.compensation_retry_seconds),
            compensation_max_attempts=self.compensation_max_attempts,
            step_reply_after=timedelta(seconds=self.step_reply_seconds),
            step_max_attempts=self.step_max_attempts,
            parallel_steps=self.parallel_steps,
        )


def _by_channel(seconds: dict[str, float]) -> tuple[tuple[str, timedelta], ...]:
    return tuple((channel, timedelta(seconds=value)) for channel, value in sorted(seconds.items()))
