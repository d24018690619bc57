"""
Autobahn WebSocket protocols: presence and WebRTC signaling.
"""
