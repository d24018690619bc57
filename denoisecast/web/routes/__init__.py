"""
The JSON API's route groups, one module per resource: each maps its URLs to
handlers and nothing else, so the HTTP surface of one concern reads in one place.
"""
