"""CDN edge: caching reverse proxy; nameserver: the authoritative DNS that picks edges."""
