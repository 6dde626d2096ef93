"""The viewer agent: the local HTTP server a viewer's players point at.

It serves a video from the BitTorrent swarm (:mod:`seedcast.peer`) and from
the CDN: :mod:`.scheduler` (sans-IO) decides which piece comes from where and
by when, :mod:`.sources` reaches the CDN through the Seedcast DNS,
:mod:`.server` is the trio shell, :mod:`.watching` a viewer that plays through
its own agent, :mod:`.commands` the ``seedcast peer --agent`` options.
"""
