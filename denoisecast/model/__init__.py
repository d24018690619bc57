"""
The DeepFilterNet model in torch: the networks, their features and STFT,
the signal path, the traced, ONNX Runtime and half-precision paths and
the engine that runs batches.  ``weights/`` finds and loads the
weights.  Knows nothing of Twisted or the server's configuration.
"""
