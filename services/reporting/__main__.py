"""python -m services.reporting: the reporting API and its consumer of the public topics in one process."""

import uvicorn

from services.reporting.bootstrap import build_app
from services.reporting.settings import ReportingSettings

if __name__ == "__main__":
    settings = ReportingSettings()
    uvicorn.run(build_app(), host=settings.http_host, port=settings.http_port, log_config=None)
