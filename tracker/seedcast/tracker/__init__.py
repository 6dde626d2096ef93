"""BitTorrent tracker: HTTP announce and scrape."""
