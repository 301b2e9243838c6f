"""Latency-targeted channel pruning for CNNs: greedy forward selection on Torch-Pruning groups."""
