#!/usr/bin/env python3
"""Container health check: GET /healthz on this container's own role port.

Installed in the image as ``seedcast-healthcheck``; Docker's HEALTHCHECK and
compose run it inside the container. The port is the first argument, else
the environment variable SEEDCAST_HEALTH_PORT; with neither (a client such as
``seedcast play`` serves nothing) the check succeeds. Exit 0 = healthy,
1 = unhealthy (no answer, or an answer other than 200), 2 = bad usage. It
prints one line saying why it failed. Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.0


def check(url: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(healthy, reason) for one GET of ``url``; never raises for network errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        return False, f"{url}: HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return False, f"{url}: {reason}"
    if status != 200:
        return False, f"{url}: HTTP {status}"
    return True, f"{url}: ok"


def main(argv: list[str]) -> int:
    port_text = argv[0] if argv else os.environ.get("SEEDCAST_HEALTH_PORT", "")
    if not port_text:
        return 0
    host = os.environ.get("SEEDCAST_HEALTH_HOST", "localhost")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        print(f"seedcast-healthcheck: not a port: {port_text!r}", file=sys.stderr)
        return 2
    healthy, reason = check(f"http://{host}:{int(port_text)}/healthz")
    if not healthy:
        print(f"seedcast-healthcheck: {reason}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
