"""Emulated network paths: delay, jitter and loss between regions, in user space.

:mod:`seedcast.netem.paths` is the sans-IO core (path profiles from the
config, and the schedule that says when a chunk or datagram leaves, or that
it is lost); :mod:`seedcast.netem.relay` is the trio shell (TCP and UDP
relays); ``seedcast netem`` runs the relays of a cluster.
"""
