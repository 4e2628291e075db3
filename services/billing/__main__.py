"""python -m services.billing: the billing API and its Kafka consumer in one process."""

import uvicorn
from pydantic import ValidationError

from services.billing.bootstrap import build_app
from services.billing.settings import BillingSettings


def _settings() -> BillingSettings:
    """The settings, or an exit naming what is wrong with them (a bad rule set, say)."""
    try:
        return BillingSettings()
    except ValidationError as error:
        problems = "; ".join(
            str(problem["msg"]).removeprefix("Value error, ")
            if not problem["loc"]
            else f"OM_BILLING_{str(problem['loc'][0]).upper()}: {problem['msg']}"
            for problem in error.errors()
        )
        raise SystemExit(f"billing cannot start: {problems}") from None


if __name__ == "__main__":
    settings = _settings()
    uvicorn.run(
        build_app(billing=settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
    )
