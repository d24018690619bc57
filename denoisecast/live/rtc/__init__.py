"""
Every place DenoiseCast reaches into aiortc's private state, in one folder:
crossing between Twisted and asyncio (``seam``), draining a socket's
datagrams per read (``sockets``), decoding on the loop and the shorter
receive buffer (``media``), sending shared packets directly
(``fanout``), and the DTLS server role of a publisher's answer (``dtls``).  Each seam checks that the state is there and falls back to
aiortc's own path if not; the canary tests in ``tests/test_live_media.py``
and ``tests/test_live_sockets.py`` fail on an aiortc whose internals changed.
"""
