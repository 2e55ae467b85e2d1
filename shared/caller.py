"""Who is calling: the one pluggable place that names the caller for limits and ownership.

Until caller authentication exists, the caller is the client address. Clients can write
anything into X-Forwarded-For, so only the entry the platform itself appends (the last
one) is trusted; Azure's front end adds it as `ip:port`.
"""

from __future__ import annotations

import azure.functions as func


def caller_id(req: func.HttpRequest) -> str:
    forwarded = req.headers.get("X-Forwarded-For", "")
    hop = forwarded.split(",")[-1].strip()
    return f"ip:{_without_port(hop)}" if hop else "ip:unknown"


def _without_port(address: str) -> str:
    if address.startswith("["):  # [v6]:port
        return address[1:].split("]")[0]
    if address.count(":") == 1:  # v4:port
        return address.split(":")[0]
    return address  # bare v4 or v6
