"""BitTorrent swarm benchmark: Seedcast vs the P2P bound and vs libtorrent.

Same as ``seedcast bench swarm`` (see ``seedcast.bench.swarm``); run it as
``python benchmarks/swarm.py --leechers 8 --leechers 16 --leechers 32``.
"""

from __future__ import annotations

import argparse
import sys

from seedcast.bench.swarm import configure, run
from seedcast.config import default_config


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/swarm.py", description=__doc__)
    configure(parser)
    return run(parser.parse_args(), default_config())


if __name__ == "__main__":
    sys.exit(main())
