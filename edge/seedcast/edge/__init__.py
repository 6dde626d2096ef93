"""CDN edge: the caching reverse proxy (the DNS that picks edges is seedcast.nameserver)."""
