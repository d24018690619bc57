"""
Domain rules shared by the HTTP routes and the WebSocket: what a user may
do to or see of another, decided once, whichever door the request came in by.
"""
