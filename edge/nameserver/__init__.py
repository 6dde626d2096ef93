"""Authoritative DNS server, edge-selection policies and health checks."""
