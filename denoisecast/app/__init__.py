"""
The application: the twistd entry point (tap), every option (config), the
reactor and start-up checks, the object graph (server) and the service tree
with its start and stop order (service).
"""
