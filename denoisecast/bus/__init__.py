"""
The live bus (L{base.LiveBus}): events that cross users and nodes, requests
to the node that holds a broadcast, and the node registry.  In one process
by default (L{memory}); on Redis with C{--redis-url} (L{redisbus}).
"""

from denoisecast.bus.base import (
    DEFAULT_NODE_TTL,
    BusRequestFailed,
    Event,
    LiveBus,
    NodeInfo,
    new_node_id,
)

__all__ = ["DEFAULT_NODE_TTL", "BusRequestFailed", "Event", "LiveBus", "NodeInfo", "new_node_id"]
