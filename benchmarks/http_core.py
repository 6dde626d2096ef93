"""The HTTP core benchmark, same as `seedcast bench http` (options pass through).

    python benchmarks/http_core.py --duration 10s --sizes 1k,1m

Our trio server (FileBody and in-memory bodies) against nginx (one worker) and
aiohttp's static handler, 64 keep-alive connections from wrk, server and wrk
pinned to different cores. See seedcast.bench.http for what is measured.
"""

import argparse
import sys

from seedcast.bench import http as http_bench
from seedcast.config import default_config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    http_bench.configure(parser)
    return http_bench.run(parser.parse_args(), default_config())


if __name__ == "__main__":
    sys.exit(main())
