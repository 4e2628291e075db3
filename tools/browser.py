"""The headless browser the dashboard test drives: Chromium and its driver from Debian's packages.

    python -m tools.browser ensure     install chromium + chromium-driver when either is missing
    python -m tools.browser paths      print where they are (exit 1 when missing)

Browser builds that a test tool downloads from its own servers cannot be fetched on our machines,
so the test drives the distribution's Chromium through the distribution's chromedriver (the two
packages come from one source package: their versions always match). `make test` runs `ensure`
first; it does nothing when both programs are already there. Installing needs root (apt-get) or
a password-less sudo; without either it stops with the command a person should run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")
# Debian installs the browser as /usr/bin/chromium and the driver as /usr/bin/chromedriver.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver",)


def log(message: str) -> None:
    print(f"[browser] {message}", flush=True)


def _which(names: tuple[str, ...], override: str) -> Path | None:
    configured = os.environ.get(override)
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def chromium_path() -> Path | None:
    return _which(CHROMIUM_NAMES, "OM_CHROMIUM")


def chromedriver_path() -> Path | None:
    return _which(DRIVER_NAMES, "OM_CHROMEDRIVER")


def _privileged(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return command
    sudo = shutil.which("sudo")
    # Fixed argument lists of our own (apt-get and the package names above), no shell.
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:  # noqa: S603
        return [sudo, "-n", *command]
    raise SystemExit(
        "[browser] Chromium and chromedriver are missing and installing them needs root: run\n"
        f"    sudo apt-get install -y --no-install-recommends {' '.join(PACKAGES)}\n"
        "  (or point OM_CHROMIUM / OM_CHROMEDRIVER at existing binaries)"
    )


def _apt_get(*arguments: str) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(_privileged(["apt-get", *arguments]), env=env).returncode  # noqa: S603


def install() -> None:
    started = time.monotonic()
    install_args = ("install", "-y", "-q", "--no-install-recommends", *PACKAGES)
    # A fresh machine may have no package lists (or stale ones naming versions the mirror no
    # longer has): refresh them only when the first attempt fails, so the usual case costs
    # no network round trip to the index.
    if _apt_get(*install_args) != 0:
        log("apt-get install failed; refreshing the package lists and trying again")
        if _apt_get("update", "-q") != 0 or _apt_get(*install_args) != 0:
            raise SystemExit("[browser] apt-get could not install " + " ".join(PACKAGES))
    log(f"installed {' '.join(PACKAGES)} in {time.monotonic() - started:.0f} s")


def ensure() -> None:
    if chromium_path() is None or chromedriver_path() is None:
        install()
    browser, driver = chromium_path(), chromedriver_path()
    if browser is None or driver is None:
        raise SystemExit("[browser] chromium or chromedriver still missing after the install")
    log(f"chromium {browser}, chromedriver {driver}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=["ensure", "paths"])
    args = parser.parse_args()
    if args.command == "ensure":
        ensure()
    else:
        browser, driver = chromium_path(), chromedriver_path()
        print(f"chromium {browser or 'missing'}\nchromedriver {driver or 'missing'}")
        sys.exit(0 if browser and driver else 1)


if __name__ == "__main__":
    main()
