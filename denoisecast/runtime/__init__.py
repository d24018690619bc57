"""
Process-wide helpers every layer may use: structured logs, ordered jobs on a
thread pool, low-priority threads, the reactor-lag metric.  Nothing here
knows the server, its configuration or the audio path.
"""
