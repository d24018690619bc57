"""
Where the model's weights come from: official release checkpoints, the
bundled ONNX export and the registry that picks one without the network.
"""
