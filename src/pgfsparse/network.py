"""Whether a server answers, asked in bounded time: the trackers (W&B, MLflow) and the W&B report check
before they talk to one, so that an unreachable server costs seconds and one line, not a client's retries."""

from __future__ import annotations

from typing import Optional


def unreachable(url: str, timeout: float = 5.0) -> Optional[str]:
    """Why `url`'s host takes no connection within `timeout` seconds, or None when it does."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        return None
    except OSError as error:
        return f"{parsed.hostname}:{port}: {error.strerror or error}"
