"""The transport interface: how to reach an address and how to listen on one.

A transport only moves bytes (``trio.abc.Stream``); framing, the handshake and
message dispatch live in :mod:`notebook_actors._channel`, the same for every transport.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import trio


class Transport(ABC):
    #: The address prefix this transport serves (``"uds"``, ``"tcp"``).
    scheme: str
    #: Whether its streams need encryption on top (they may cross hosts or be seen
    #: by other users); a private channel (a 0700 Unix socket) does not.
    encrypts: bool = False

    @abstractmethod
    async def connect(self, location: str) -> trio.abc.Stream:
        """Open a byte stream to ``location``.

        Raises:
            OSError: nothing listens there.
        """

    @abstractmethod
    async def listen(self, location: str) -> tuple[list[trio.abc.Listener[trio.abc.Stream]], str]:
        """Listen on ``location``; return the listeners and the bound location
        (e.g. with the real port when ``location`` asked for port 0).

        Raises:
            OSError: the location cannot be bound (in use, no permission).
        """

    def cleanup(self, location: str) -> None:  # noqa: B027 - an optional hook, not abstract
        """Remove what listening left behind (a socket file); default: nothing."""
