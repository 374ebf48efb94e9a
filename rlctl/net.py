"""One fast question before any slow client: can we reach that host at all?

Clients with retries (huggingface_hub, openai) spend tens of seconds backing off against a dead
network; a plain TCP connect answers in milliseconds (or `timeout`), so a stage can fail at once
with one clear line instead.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def reachable(url: str, timeout: float = 3.0) -> bool:
    u = urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname or "", port), timeout=timeout).close()
        return True
    except OSError:
        return False
