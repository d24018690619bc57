"""
Live broadcasts: WebRTC ingest through the denoiser and fan-out to friends.
"""
