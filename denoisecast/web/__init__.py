"""
The Twisted Web resource tree: pages, the JSON API, static files, metrics.
"""
