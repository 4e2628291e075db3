"""python -m services.billing: the billing API and its Kafka consumer in one process."""

import uvicorn

from services.billing.bootstrap import build_app
from services.billing.settings import BillingSettings

if __name__ == "__main__":
    settings = BillingSettings()
    uvicorn.run(
        build_app(billing=settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
    )
