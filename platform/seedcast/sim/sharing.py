"""Max-min fair sharing of node uplinks and downlinks among transfers.

The model: every node has an upload and a download capacity (bytes/s); a
transfer (a TCP connection carrying data from ``src`` to ``dst``) uses one
unit of ``src``'s uplink and ``dst``'s downlink and may have a cap of its own.
TCP flows through a shared bottleneck converge to roughly equal shares, and
the token buckets of the real processes split a node's budget among its
connections first come first served, which over a second is the same. So the
rates are the max-min fair allocation: no transfer can go faster without
slowing one that is no faster than it. Computed by progressive filling: raise
every unfrozen rate by the same amount until some uplink, downlink or
per-transfer cap is full, freeze the transfers it limits, repeat. Each round
freezes at least one constraint, so it ends after at most (nodes x 2 +
transfers) rounds, in practice a handful (one per distinct bottleneck level).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["max_min_rates"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EPSILON = 1e-9


def max_min_rates(
    src: IntArray,
    dst: IntArray,
    upload: FloatArray,
    download: FloatArray,
    caps: FloatArray | None = None,
) -> FloatArray:
    """The max-min fair rate of each transfer ``src[i] -> dst[i]``.

    ``upload[n]`` / ``download[n]`` are node ``n``'s capacities (``inf`` =
    unlimited); ``caps[i]`` limits transfer ``i`` alone (``inf`` or omitted =
    none). A transfer limited by nothing at all gets ``inf``.
    """
    count = len(src)
    rates = np.zeros(count)
    if count == 0:
        return rates
    nodes = len(upload)
    up_left = upload.astype(np.float64, copy=True)
    down_left = download.astype(np.float64, copy=True)
    cap_left = np.full(count, np.inf) if caps is None else caps.astype(np.float64, copy=True)
    active = np.ones(count, dtype=bool)
    while active.any():
        s, d = src[active], dst[active]
        users_up = np.bincount(s, minlength=nodes)
        users_down = np.bincount(d, minlength=nodes)
        with np.errstate(divide="ignore", invalid="ignore"):
            share_up = np.where(users_up > 0, up_left / np.maximum(users_up, 1), np.inf)
            share_down = np.where(users_down > 0, down_left / np.maximum(users_down, 1), np.inf)
        share = np.minimum(np.minimum(share_up[s], share_down[d]), cap_left[active])
        step = float(share.min())
        if not np.isfinite(step):
            rates[active] = np.inf
            break
        rates[active] += step
        cap_left[active] -= step
        up_left -= step * users_up
        down_left -= step * users_down
        # Frozen: transfers through a full uplink/downlink, or at their own cap.
        full_up = np.isfinite(upload) & (up_left <= _EPSILON * np.maximum(upload, 1.0))
        full_down = np.isfinite(download) & (down_left <= _EPSILON * np.maximum(download, 1.0))
        frozen = full_up[src] | full_down[dst] | (cap_left <= _EPSILON * np.maximum(rates, 1.0))
        active &= ~frozen
    return rates
