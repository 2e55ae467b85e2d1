"""The Functions host ⇄ worker RPC messages, compiled from function_rpc.proto at install.

The platform's proxy worker hands azure-functions-runtime a module of these message
classes; our local host hands it this one.
"""

from __future__ import annotations

try:
    from devhost.rpc import function_rpc_pb2 as messages
except ImportError as exc:  # a checkout where `make install` has not run yet
    raise ImportError(
        "devhost/rpc/function_rpc_pb2.py is missing: run `make install`, which compiles "
        "devhost/rpc/function_rpc.proto"
    ) from exc

__all__ = ["messages"]
