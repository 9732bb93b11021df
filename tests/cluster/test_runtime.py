"""The generated runtime cluster file keeps every setting of the user's, except the addresses."""

from pathlib import Path

import pytest

from quorapay.cluster import runtime
from quorapay.config import default_cluster, load_config, render


def test_the_runtime_file_carries_every_setting_but_the_addresses(tmp_path: Path) -> None:
    document = default_cluster(nodes=3, name="settings")
    document["timing"].update(tick=0.02, heartbeat_interval=0.06, election_timeout=1.5,
                              request_timeout=7.0, max_clock_offset=2.5, leader_silence=0.9)
    document["nodes"][1].update(clock_offset="-1.5s", clock_drift="120ppm")
    document["zookeeper"].update(session_timeout=3.0)
    document["storage"].update(  # (these went missing once: the nodes ran the defaults)
        compact_every=123, compact_retain=7, max_log_commands=4567, cache_mb=9,
        snapshot_part_rows=11, snapshot_mb_per_s=2.5)
    (tmp_path / "cluster.toml").write_text(render(document))
    cluster = load_config(tmp_path / "cluster.toml")
    runtime.ensure_plan(cluster)
    generated = load_config(runtime.runtime_path(cluster))
    assert generated.name == cluster.name
    assert generated.timing == cluster.timing
    assert generated.storage == cluster.storage
    assert generated.zookeeper.session_timeout == cluster.zookeeper.session_timeout
    assert [n.data_dir for n in generated.nodes] == [n.data_dir for n in cluster.nodes]
    assert [n.client_port for n in generated.nodes] == [n.client_port for n in cluster.nodes]
    assert [n.clock for n in generated.nodes] == [n.clock for n in cluster.nodes]
    assert generated.nodes[1].clock.offset_ms == -1500
    assert generated.nodes[1].clock.drift_ppm == 120


def test_the_proxy_plan_never_takes_a_port_the_cluster_file_gives_a_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in CI: a proxy port drawn 'free' before ZooKeeper and the proxies were up could be
    one of the cluster's own ports, and the proxy then failed to bind it."""
    document = default_cluster(nodes=3, name="ports")
    (tmp_path / "cluster.toml").write_text(render(document))
    cluster = load_config(tmp_path / "cluster.toml")
    configured = runtime.configured_ports(cluster)
    assert {n.client_port for n in cluster.nodes} <= configured
    assert cluster.zookeeper.port in configured
    drawn = iter(sorted(configured) + list(range(50_000, 50_100)))
    monkeypatch.setattr("quorapay.cluster.ports.random.SystemRandom.randrange",
                        lambda self, low, high: next(drawn))
    monkeypatch.setattr("quorapay.cluster.ports.ephemeral_start", lambda: 60_000)
    runtime.ensure_plan(cluster)
    plan = runtime.read_plan(runtime.plan_path(cluster))
    bound = [*plan.peer_ports.values(), *plan.client_ports.values(),
             *(link.listen_port for link in plan.links), *cluster.zookeeper.ports]
    assert len(bound) == len(set(bound)), sorted(bound)  # no two listeners on one port


@pytest.mark.parametrize(("tick", "election"), [(0.05, 2.0), (0.05, 5.0), (0.02, 2.0), (0.1, 10.0)])
def test_every_timing_a_cluster_file_allows_makes_a_core_timing(
        tmp_path: Path, tick: float, election: float) -> None:
    """The stall times are seconds, turned into ticks that the core's checks accept."""
    document = default_cluster(nodes=3, name="timing")
    document["timing"].update(tick=tick, election_timeout=election, heartbeat_interval=tick * 2)
    (tmp_path / "cluster.toml").write_text(render(document))
    timing = load_config(tmp_path / "cluster.toml").timing.core()
    assert timing.recovery_stall_ticks * tick >= 20.0 or \
        timing.recovery_stall_ticks > 4 * timing.snapshot_retry_ticks
