"""python -m services.order: the order API, the saga's consumers and its deadline loop."""

import uvicorn

from services.order.bootstrap import build_app
from services.order.settings import OrderSettings

if __name__ == "__main__":
    settings = OrderSettings()
    uvicorn.run(
        build_app(order_settings=settings), host=settings.http_host, port=settings.http_port, log_config=None
    )
