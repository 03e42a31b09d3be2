"""Is a download host reachable? Asked once before a download, because without a network
torchvision would try every mirror in turn (minutes), and importing torchvision alone costs
2-3 s per sweep job. Every dataset module asks through here, so one test double covers all."""

from __future__ import annotations

import socket


def network_reachable(host: str, port: int = 443, timeout_s: float = 3.0) -> bool:
    """True if a TCP connection to host:port opens within timeout_s seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
