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


def prefer_offline_hub(timeout: float = 3.0) -> None:
    """If the Hugging Face hub cannot be reached, switch huggingface_hub to its local cache
    (HF_HUB_OFFLINE=1) instead of letting it retry for ~30 s. Call it before importing
    datasets or transformers: huggingface_hub reads the variable once, on import."""
    import logging
    import os
    import sys

    if "huggingface_hub" in sys.modules or os.environ.get("HF_HUB_OFFLINE"):
        return
    if not reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout):
        logging.getLogger("rlctl").debug("the hub is unreachable; using the local cache only")
        os.environ["HF_HUB_OFFLINE"] = "1"
