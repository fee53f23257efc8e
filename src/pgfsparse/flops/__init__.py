"""FLOPs: the analytic per-layer counter (scaled by each step's density) and device peaks."""
