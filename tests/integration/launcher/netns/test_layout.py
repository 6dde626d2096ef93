"""The pure half of ``--netns``: moving a config's addresses, naming, the ip/tc commands.

No root needed: nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from seedcast.config import ClusterConfig, default_config, load_config, to_toml
from seedcast.errors import ConfigError
from seedcast.launcher._netns_config import (
    AddressMap,
    Shaping,
    cluster_layout,
    netns_config,
    viewer_regions,
)
from seedcast.launcher._netns_layout import NetworkLayout, NodeLink, tbf_arguments, wire_rate
from seedcast.launcher.netns import prefix_for, wrap_plan
from seedcast.launcher.plan import ClusterPlan, ProcessSpec


def capped(config: ClusterConfig) -> ClusterConfig:
    peers = dataclasses.replace(config.peers, upload=1_000_000.0, download=3_000_000.0, count=3)
    edges = tuple(dataclasses.replace(edge, upload=5_000_000.0) for edge in config.edges)
    return dataclasses.replace(config, peers=peers, edges=edges)


def test_every_address_moves_into_the_subnet() -> None:
    moved = netns_config(default_config())
    assert moved.origin.listen == "10.77.10.1:8080"
    assert moved.origin.url == "http://10.77.10.1:8080"
    assert [edge.url for edge in moved.edges] == [
        "http://10.77.20.1:8080",
        "http://10.77.20.2:8080",
    ]
    assert moved.dns.listen == "10.77.53.1:53"
    assert moved.dns.server == "10.77.53.1:53"
    assert moved.dns.metrics_listen == "10.77.53.1:9153"
    assert moved.tracker.announce_url == "http://10.77.30.1:6969/announce"
    assert [region.viewer_prefix for region in moved.regions] == ["10.77.41.0/24", "10.77.42.0/24"]
    assert moved.peers.peer_address(2) == "10.77.40.2"
    assert moved.prometheus.listen == "10.77.0.1:9090"
    assert "www 300 IN A 10.77.10.1" in moved.dns.zones[0].records
    assert moved.region_of("10.77.41.3") is not None
    # Loopback is gone from the whole config.
    assert "127.0." not in to_toml(moved).split("\n", 1)[1]


def test_moved_config_round_trips_through_toml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    moved = netns_config(capped(default_config()))
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(moved), encoding="utf-8")
    again = load_config(path)
    assert dataclasses.replace(again, source=moved.source) == moved


def test_public_urls_with_addresses_move_and_names_are_refused() -> None:
    base = default_config()
    with_urls = dataclasses.replace(
        base,
        origin=dataclasses.replace(base.origin, public_url="http://127.0.10.1:8080"),
        tracker=dataclasses.replace(base.tracker, public_url="http://127.0.30.1:6969"),
    )
    moved = netns_config(with_urls)
    assert moved.origin.url == "http://10.77.10.1:8080"
    assert moved.tracker.announce_url == "http://10.77.30.1:6969/announce"
    named = dataclasses.replace(
        base, origin=dataclasses.replace(base.origin, public_url="http://origin:8080")
    )
    with pytest.raises(ConfigError, match=r"origin\.public_url: 'origin' is a name"):
        netns_config(named)
    outside = dataclasses.replace(
        base, origin=dataclasses.replace(base.origin, listen="127.1.0.1:8080")
    )
    with pytest.raises(ConfigError, match=r"origin\.listen: 127\.1\.0\.1 is outside"):
        netns_config(outside)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("www 300 IN A 127.0.10.1", "www 300 IN A 10.77.10.1"),
        ("a 60 IN A 127.0.0.1", "a 60 IN A 10.77.0.1"),
        ('x IN TXT "1127.0.0.1"', 'x IN TXT "1127.0.0.1"'),
        ("y IN A 127.0.10.1.5", "y IN A 127.0.10.1.5"),
        ("video 300 IN CNAME video.kingcdn.test.", "video 300 IN CNAME video.kingcdn.test."),
    ],
)
def test_zone_records_move_only_whole_loopback_addresses(text: str, expected: str) -> None:
    assert AddressMap().text(text) == expected


def test_other_subnets_keep_the_host_part() -> None:
    moved = AddressMap("172.31.0.0/16")
    assert moved.address("127.0.20.7", "x") == "172.31.20.7"
    with pytest.raises(ConfigError, match="/16 or larger"):
        AddressMap("10.1.2.0/24")


def test_tc_shaping_moves_the_caps_off_the_token_buckets() -> None:
    config = capped(default_config())
    moved, layout = cluster_layout(config, "sc000001", shaping=Shaping.TC)
    assert moved.peers.upload == 0
    assert moved.peers.download == 0
    assert all(edge.upload == 0 for edge in moved.edges)
    nodes = {node.name: node for node in layout.nodes}
    assert nodes["edge-1"].upload == 5_000_000.0
    assert (nodes["seed"].upload, nodes["seed"].download) == (1_000_000.0, 3_000_000.0)
    assert (nodes["viewer-3"].upload, nodes["viewer-3"].download) == (1_000_000.0, 3_000_000.0)
    assert nodes["origin"].upload == 0

    both, both_layout = cluster_layout(config, "sc000001", shaping=Shaping.BOTH)
    assert both.peers.upload == 1_000_000.0
    assert {node.name: node for node in both_layout.nodes}["seed"].upload == 1_000_000.0

    buckets, bucket_layout = cluster_layout(config, "sc000001", shaping=Shaping.BUCKETS)
    assert buckets.peers.upload == 1_000_000.0
    assert all(node.upload == 0 and node.download == 0 for node in bucket_layout.nodes)


def test_nodes_match_the_launchers_process_names_and_viewer_addresses() -> None:
    config = capped(default_config())
    moved, layout = cluster_layout(config, "sc000001", prometheus=True)
    names = [node.name for node in layout.nodes]
    assert names == [
        "origin",
        "dns",
        "tracker",
        "edge-1",
        "edge-2",
        "seed",
        "viewer-1",
        "viewer-2",
        "viewer-3",
        "prometheus",
    ]
    assert viewer_regions(moved) == ["eu", "us", "eu"]
    nodes = {node.name: node for node in layout.nodes}
    # viewer-k: its region's k-th address first (the agent's source), its peer address second.
    assert nodes["viewer-1"].addresses == ("10.77.41.1", "10.77.40.2")
    assert nodes["viewer-2"].addresses == ("10.77.42.2", "10.77.40.3")
    assert nodes["viewer-3"].addresses == ("10.77.41.3", "10.77.40.4")
    assert nodes["seed"].addresses == ("10.77.40.1",)
    assert layout.nameserver == "10.77.53.1"
    assert layout.namespace("viewer-2") == "sc000001-viewer-2"


def test_setup_commands_build_bridge_veths_addresses_and_shaping() -> None:
    layout = NetworkLayout(
        prefix="sc0001",
        subnet="10.77.0.0/16",
        nodes=(
            NodeLink("a", ("10.77.0.1", "10.77.1.1"), upload=1_000_000.0),
            NodeLink("b", ("10.77.0.2",), download=2_000_000.0),
        ),
    )
    commands = [" ".join(command) for command in layout.setup_commands()]
    assert commands[:4] == [
        "ip netns add sc0001-a",
        "ip netns add sc0001-b",
        "ip link add sc0001-br type bridge",
        "ip link set sc0001-br up",
    ]
    assert "ip link add sc0001-1 mtu 1500 type veth peer name eth0 netns sc0001-a" in commands
    assert "ip link set sc0001-2 master sc0001-br" in commands
    assert commands.index("ip -n sc0001-a addr add 10.77.0.1/16 dev eth0") < commands.index(
        "ip -n sc0001-a addr add 10.77.1.1/16 dev eth0"
    )
    upload = [c for c in commands if c.startswith("tc -n sc0001-a qdisc replace dev eth0 root tbf")]
    download = [c for c in commands if c.startswith("tc qdisc replace dev sc0001-2 root tbf")]
    assert len(upload) == 1
    assert len(download) == 1
    assert not any("del" in command for command in commands)  # nothing to remove on a new link
    assert [" ".join(c) for c in layout.teardown_commands()] == [
        "ip link del sc0001-1",
        "ip link del sc0001-2",
        "ip link del sc0001-br",
        "ip netns del sc0001-a",
        "ip netns del sc0001-b",
    ]
    reshape = [" ".join(c) for c in layout.shaping_commands("b", 0, 0)]
    assert reshape == ["tc -n sc0001-b qdisc del dev eth0 root", "tc qdisc del dev sc0001-2 root"]


def test_tbf_rate_covers_the_header_overhead() -> None:
    arguments = tbf_arguments(1_000_000.0)
    assert arguments[0] == "tbf"
    bits = int(arguments[arguments.index("rate") + 1].removesuffix("bit"))
    assert bits == round(wire_rate(1_000_000.0) * 8)
    assert 1.04 < bits / 8_000_000 < 1.05  # 1514 / 1448
    assert int(arguments[arguments.index("burst") + 1]) >= 16 * 1024


@pytest.mark.parametrize(
    ("layout_arguments", "message"),
    [
        ({"prefix": "Bad"}, "netns prefix"),
        ({"prefix": "abcdefghijk"}, "netns prefix"),
        ({"subnet": "8.8.0.0/16"}, "private range"),
        ({"subnet": "127.0.0.0/16"}, "private range"),
        ({"nodes": (NodeLink("a", ("10.78.0.1",)),)}, "not a host address"),
        ({"nodes": (NodeLink("a", ("10.77.0.0",)),)}, "not a host address"),
        ({"nodes": (NodeLink("a", ("10.77.0.1",)), NodeLink("b", ("10.77.0.1",)))}, "both use"),
        ({"nodes": (NodeLink("a", ("10.77.0.1",)), NodeLink("a", ("10.77.0.2",)))}, "twice"),
    ],
)
def test_layout_rejects_bad_input(layout_arguments: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "prefix": "sc1",
        "subnet": "10.77.0.0/16",
        "nodes": (NodeLink("a", ("10.77.0.1",)),),
    }
    arguments.update(layout_arguments)
    with pytest.raises(ConfigError, match=message):
        NetworkLayout(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "Edge", "a b", "x" * 41, "-a"])
def test_node_names_are_safe_for_ip(name: str) -> None:
    with pytest.raises(ConfigError):
        NodeLink(name, ("10.77.0.1",))


def test_layout_record_round_trips_and_junk_is_refused() -> None:
    _, layout = cluster_layout(capped(default_config()), "sc000001")
    assert NetworkLayout.from_json(json.loads(json.dumps(layout.to_json()))) == layout
    for junk in [
        None,
        [],
        {"format": 2},
        {"format": 1, "prefix": "x"},
        {**layout.to_json(), "subnet": "x"},
    ]:
        with pytest.raises(ValueError):
            NetworkLayout.from_json(junk)


def test_prefix_is_stable_per_run_directory_and_short(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert prefix_for(tmp_path / "run") == prefix_for(tmp_path / "run")
    assert prefix_for(tmp_path / "run") != prefix_for(tmp_path / "other")
    assert len(prefix_for(tmp_path)) == 8


def test_wrap_plan_runs_each_process_in_its_namespace() -> None:
    _, layout = cluster_layout(default_config(), "sc000001")
    plan = ClusterPlan(
        (
            ProcessSpec("origin", "origin", ("python", "-m", "seedcast", "origin"), "x:1"),
            ProcessSpec("viewer", "viewer-2", ("python", "-m", "seedcast", "peer"), "x:2"),
        ),
        ("prometheus: skipped",),
    )
    wrapped = wrap_plan(plan, layout)
    assert wrapped.skipped == plan.skipped
    assert wrapped.processes[0].argv[1:] == (
        "netns",
        "exec",
        "sc000001-origin",
        "python",
        "-m",
        "seedcast",
        "origin",
    )
    assert wrapped.processes[1].argv[3] == "sc000001-viewer-2"
    stranger = ClusterPlan((ProcessSpec("test", "nobody", ("true",), "x:1"),))
    with pytest.raises(Exception, match="no namespace planned for process 'nobody'"):
        wrap_plan(stranger, layout)
