"""Drivers that run a peer deduplicator in an interpreter of its own (see bench/bench_peers.py)."""
