"""trio helpers: broadcast receivers, per-actor shared resources, gathering contexts,
collapsing single-error exception groups."""

from .._broadcast import BroadcastReceiver as BroadcastReceiver
from .._broadcast import Lagged as Lagged
from .._broadcast import broadcast_receiver as broadcast_receiver
from ._cluster import open_actor_cluster as open_actor_cluster
from ._eg import collapse_eg as collapse_eg
from ._mngrs import gather_contexts as gather_contexts
from ._mngrs import maybe_open_context as maybe_open_context

__all__ = [
    "BroadcastReceiver",
    "Lagged",
    "broadcast_receiver",
    "collapse_eg",
    "gather_contexts",
    "maybe_open_context",
    "open_actor_cluster",
]
