"""The media store: recordings and snapshots on disk, and their index."""
