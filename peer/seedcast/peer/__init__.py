"""BitTorrent peer: metainfo, wire protocol, picker, choker, storage, swarm (the viewer agent is seedcast.agent)."""
