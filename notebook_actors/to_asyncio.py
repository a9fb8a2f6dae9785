"""asyncio interop: run trio as a guest on an asyncio loop ("infected asyncio")."""
from __future__ import annotations

_guest_mode = False


def is_guest_mode() -> bool:
    """True while this process runs trio as a guest on an asyncio loop."""
    return _guest_mode
