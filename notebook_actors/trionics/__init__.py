"""trio helpers: broadcast receivers, per-actor shared resources, gathering contexts."""
