"""BitTorrent peer: metainfo, wire protocol, picker, choker, storage, swarm, viewer agent."""
