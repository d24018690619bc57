The server holds one frame (20 ms) of a publisher's audio before decoding it instead of two: its own latency beyond the denoiser's chunk is now about 20 ms.
