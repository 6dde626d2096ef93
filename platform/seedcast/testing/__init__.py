"""Test support: real media, real role processes and baselines for tests and benches.

It may import the roles; the roles never import it (``make lint`` enforces that).
"""
