"""Latency measurement on each deployment backend, and the tables and plots that compare models."""
