"""Multirun sweeps: a point's status and lock, folder names, and the end-of-sweep summary."""
