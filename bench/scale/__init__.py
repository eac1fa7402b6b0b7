"""Helpers for bench/bench_similarity_scale.py (1M-product similarity benchmark)."""
