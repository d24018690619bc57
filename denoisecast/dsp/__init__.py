"""
The audio path: ring buffers, the DeepFilterNet engine and the denoise
worker pool.
"""
