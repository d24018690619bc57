"""
Streaming denoise on the reactor: the scheduler that batches every live
stream's hops through the model in a worker pool, and the per-stream slots.
"""
