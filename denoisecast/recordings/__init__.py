"""
Recordings: every broadcast written to browser-playable files as it happens.
"""
