"""Experimental APIs kept for tractor programs: ``msgpub``, the topic pub-sub decorator.

New code streams with ``@context`` + ``ctx.open_stream()`` and fans out locally with
``MsgStream.subscribe()``; these names stay so that older tractor scripts run.
"""

from ._pubsub import msgpub as msgpub

__all__ = ["msgpub"]
