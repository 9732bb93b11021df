"""Property-based fuzzing of what someone holding the ZooKeeper credential can write, with the
coordinators of three nodes behind it: any content in `epoch` and `leader`, squatting candidates
and leaders (ephemeral or persistent), deleted znodes -- interleaved with leadership changes.
Nothing raises; and once the squatter's session is gone, an election still completes with an
epoch above every one granted before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quorapay.core import znodes
from quorapay.core.coordinator import Create, Delete, EpochSeen, RetryDue
from quorapay.core.inputs import LeadershipGranted
from quorapay.core.types import Epoch, NodeId
from tests.core.test_coordinator_garbage import Members

ROOT = "/quorapay/t"
garbage = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b'{"epoch": 9223372036854775808}', b'{"epoch": -1}', b'{"epoch": 5}',
                     b'{"epoch": 9007199254740991}', b'{"epoch": 9007199254740990}', b"{}",
                     b"null", b'{"node": "n2", "epoch": 3, "peer_url": "", "client_url": ""}',
                     b'{"node": "zz", "epoch": 3, "peer_url": "", "client_url": ""}']))
member = st.sampled_from(["n1", "n2", "n3", "mallory"])
tamper = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(["epoch", "leader", "members/n2"]), garbage,
              st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(["epoch", "leader", "election", "members/n1"]),
              st.just(b""), st.just(False)),
    st.tuples(st.just("candidate"), member, st.just(b""), st.booleans()),
    st.tuples(st.just("relinquish"), member, st.just(b""), st.just(False)),
)


def leaders(world: Members) -> dict[str, int]:
    return {n: c.granted for n, c in world.coordinators.items() if c.granted is not None}


def follow_grants(world: Members) -> None:
    """What each replica would do: see every epoch granted (it follows the leader)."""
    granted = [i.epoch for inputs in world.inputs.values() for i in inputs
               if isinstance(i, LeadershipGranted)]
    if granted:
        for node in world.coordinators:
            world.feed(node, EpochSeen(epoch=Epoch(max(granted))))


@settings(max_examples=150, deadline=None)
@given(st.lists(tamper, min_size=1, max_size=8))
def test_no_znode_content_or_squatter_stops_the_election(actions: list[tuple]) -> None:
    world = Members("n1", "n2", "n3")
    for node in ("n1", "n2", "n3"):
        world.connect(node)
        world.run()
    follow_grants(world)
    squatter = world.zk.open_session(now=0, timeout=10)
    for kind, target, data, flag in actions:
        if kind == "write":
            _, _, fired = world.zk.execute(squatter, Delete(path=f"{ROOT}/{target}", version=-1))
            world.deliver(fired)
            _, _, fired = world.zk.execute(squatter, Create(path=f"{ROOT}/{target}", data=data,
                                                            ephemeral=flag))
        elif kind == "delete":
            _, _, fired = world.zk.execute(squatter, Delete(path=f"{ROOT}/{target}", version=-1))
        elif kind == "candidate":
            _, _, fired = world.zk.execute(squatter, Create(
                path=f"{ROOT}/election/{target}__sq__", ephemeral=flag, sequential=True))
        else:
            fired = []
            if target in leaders(world):
                world.relinquish(target, leaders(world)[target])
        world.deliver(fired)
        world.run()
        follow_grants(world)
    highest = max((i.epoch for inputs in world.inputs.values() for i in inputs
                   if isinstance(i, LeadershipGranted)), default=0)
    world.deliver(world.zk.close_session(squatter))
    for _ in range(6):  # leaders give up in turn; retries are due; someone must lead anew
        world.run()
        follow_grants(world)
        for node, epoch in list(leaders(world).items()):
            world.relinquish(node, epoch)
        for node in world.coordinators:
            world.feed(node, RetryDue())
    world.run()
    follow_grants(world)
    granted_after = [i.epoch for inputs in world.inputs.values() for i in inputs
                     if isinstance(i, LeadershipGranted)]
    assert max(granted_after) > highest
    record = znodes.parse_epoch(world.zk.data(f"{ROOT}/epoch") or b"")
    assert record is not None and record.epoch >= max(granted_after)
    names = {n for n in world.coordinators if world.coordinators[n].granted is not None}
    assert names <= {NodeId("n1"), NodeId("n2"), NodeId("n3")}
