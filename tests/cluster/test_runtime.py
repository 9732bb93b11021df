"""The generated runtime cluster file keeps every setting of the user's, except the addresses."""

from pathlib import Path

from quorapay.cluster import runtime
from quorapay.config import default_cluster, load_config, render


def test_the_runtime_file_carries_every_setting_but_the_addresses(tmp_path: Path) -> None:
    document = default_cluster(nodes=3, name="settings")
    document["timing"].update(tick=0.02, heartbeat_interval=0.06, election_timeout=1.5,
                              request_timeout=7.0, max_clock_offset=2.5)
    document["nodes"][1].update(clock_offset="-1.5s", clock_drift="120ppm")
    document["zookeeper"].update(session_timeout=3.0)
    document["storage"].update(compact_every=123, compact_retain=7)
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
