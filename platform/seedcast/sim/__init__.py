"""``seedcast simulate``: the benches' strategies under a virtual clock, at any scale.

- :mod:`seedcast.sim.events` -- the discrete-event loop (virtual clock, timers,
  and fluid transfers advanced between events);
- :mod:`seedcast.sim.sharing` -- max-min fair bandwidth sharing of uplinks and
  downlinks with per-connection caps (progressive filling, numpy);
- :mod:`seedcast.sim.swarm` -- piece level: the product's picker and choker
  (and the web seed's piece choice) drive every simulated peer;
- :mod:`seedcast.sim.fluid` -- the flow model for 10^3..10^6 peers, calibrated
  against the piece level;
- :mod:`seedcast.sim.streaming` -- viewers with playback deadlines, ABR rules and
  DNS edge policies from the product, cdn vs hybrid;
- :mod:`seedcast.sim.commands` -- the command line and the calibration report.
"""
