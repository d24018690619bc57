"""
Loaded by a server process the tests start (``PYTHONPATH`` names this
folder): its WebRTC host candidates are on the loopback interface only, so
the test's media never leaves loopback.  aioice itself never offers
127.0.0.1.
"""

import aioice.ice


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = _loopback_only
