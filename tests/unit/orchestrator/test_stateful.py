"""A Hypothesis state machine driving the real handlers over in-memory adapters.

Rules submit commands (as JetStream would deliver them: again after a Retry or a crash),
run two deliveries concurrently (replicas racing on one instance, or the same command
delivered twice), inject provider faults and crashes, move the worker's heartbeat and the
clock. A naive model remembers what was asked. Invariants, after every step:

- no instance has two live servers, except after one provisioning command was delivered twice
  at once (a stalled replica) and the delivery that lost the race crashed before deleting its
  server: then the redelivery, or the termination, deletes it (checked at the end);
- a terminated instance has no live server and costs nothing;
- every instance's history folds (only legal transitions);
- what the model knows happened did happen (terminate done => terminated).

At the end, every instance is terminated and every delivery drained: the provider is empty.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts.ids import derived_id
from services.orchestrator import handlers
from services.orchestrator.adapters.memory import InjectedCrash
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain.evolve import fold
from services.orchestrator.handlers import Done, Rejected, Retry
from services.orchestrator.ports import Conflict, RateLimited, Transient

from .factories import ORG, check, memory_ports, provision, terminate

INSTANCES = ("i-0", "i-1", "i-2")
instances = st.sampled_from(INSTANCES)


class OrchestratorMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.rng = random.Random(0)
        self.yields = 0
        self.ports = memory_ports(offload=self._offload)
        self.pending: list = []  # deliveries JetStream would make again (Retry, crash)
        self.seen_published = 0
        self.provisions = {i: provision(i, command_id=derived_id("provision", i)) for i in INSTANCES}
        self.terminated_by_model: set[str] = set()
        self.provisioned_by_model: set[str] = set()
        self.duplicate_allowed: set[str] = set()  # see at_most_one_live_server_per_instance
        self.crashed = False

    def teardown(self):
        self.loop.close()

    async def _offload(self, fn, *args):
        for _ in range(self.rng.randint(0, self.yields)):
            await asyncio.sleep(0)
        return fn(*args)

    # --- delivering -----------------------------------------------------------------------

    async def _deliver(self, command) -> None:
        try:
            outcome = await handlers.handle(command, self.ports, attempt=1 + self.rng.randint(0, 6))
        except InjectedCrash:
            outcome = None  # the process died: no ack, JetStream redelivers
            self.crashed = True
        if outcome is None or isinstance(outcome, Retry):
            if command not in self.pending:
                self.pending.append(command)
            return
        assert isinstance(outcome, (Done, Rejected))
        if command in self.pending:
            self.pending.remove(command)
        if isinstance(outcome, Done):
            if command.__struct_config__.tag == "instance.terminate":
                self.terminated_by_model.add(command.instance_id)
            if command.__struct_config__.tag == "instance.provision":
                self.provisioned_by_model.add(command.instance_id)

    def deliver(self, *commands) -> None:
        async def run():
            await asyncio.gather(*(self._deliver(c) for c in commands))

        self.crashed = False
        self.loop.run_until_complete(run())
        for command in commands:
            if commands.count(command) > 1 and self.crashed and command.__struct_config__.tag == "instance.provision":
                self.duplicate_allowed.add(command.instance_id)
        published = self.ports.commands.published
        self.pending.extend(published[self.seen_published:])  # published commands get delivered too
        self.seen_published = len(published)

    def state(self, instance_id):
        return fold(self.ports.store.events(f"evt.{ORG}.instance.{instance_id}.*"))

    # --- rules ----------------------------------------------------------------------------

    @rule(instance=instances)
    def submit_provision(self, instance):
        self.deliver(self.provisions[instance])

    @rule(instance=instances)
    def submit_terminate(self, instance):
        self.deliver(terminate(instance))

    @rule(instance=instances)
    def submit_check(self, instance):
        self.deliver(check(instance))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def redeliver(self, data):
        self.deliver(data.draw(st.sampled_from(self.pending)))

    @rule(data=st.data(), yields=st.integers(0, 6), seed=st.integers(0, 2**16))
    def race(self, data, yields, seed):
        """Two deliveries at once: two replicas, or one command delivered twice (a zombie)."""
        choices = list(self.provisions.values()) + [terminate(i) for i in INSTANCES] + self.pending
        first, second = data.draw(st.sampled_from(choices)), data.draw(st.sampled_from(choices))
        self.yields, self.rng = yields, random.Random(seed)
        try:
            self.deliver(first, second)
        finally:
            self.yields = 0

    @rule(instance=instances, status=st.sampled_from(["starting", "ready", "failed"]))
    def worker_heartbeat(self, instance, status):
        self.ports.heartbeats.set(ORG, instance, status, self.ports.clock.now())

    @rule(seconds=st.sampled_from([1, 20, 300, 1000]))
    def advance_clock(self, seconds):
        self.ports.clock.advance(seconds)

    @rule(op=st.sampled_from(["find_servers_by_tag", "create_server", "delete_server", "get_server"]),
          error=st.sampled_from([Transient("503"), RateLimited("429", 3.0), Conflict("busy")]))
    def provider_fails(self, op, error):
        self.ports.compute.fail_next(op, error)

    @rule()
    def ambiguous_create(self):
        self.ports.compute.ambiguous_creates += 1

    @rule(tag=st.sampled_from(["instance.server_created", "instance.billing_started", "instance.terminated",
                               "instance.server_deleted", "instance.ready"]))
    def crash_before_append(self, tag):
        self.ports.store.crash_before_tags.append(tag)

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def at_most_one_live_server_per_instance(self):
        for instance in INSTANCES:
            live = len(self.ports.compute.live_servers(instance))
            # Two deliveries of one provision at once (a stalled replica) may both create before
            # either records; the loser deletes its own. Only if it crashes first does a duplicate
            # outlive the step: its redelivery sweeps it, or, when the other delivery acked the
            # message (no redelivery), the termination's sweep does.
            assert live <= 1 or self.provisions[instance] in self.pending or instance in self.duplicate_allowed

    @invariant()
    def terminated_instances_have_no_server_and_no_cost(self):
        for instance in INSTANCES:
            state = self.state(instance)  # folding also proves the history is legal
            if state.status in lc.TERMINAL:
                # An orphan may outlive the end only while its provisioning command is still to be
                # redelivered (its create's outcome was unknown); that redelivery sweeps it.
                if self.provisions[instance] not in self.pending:
                    assert self.ports.compute.live_servers(instance) == [], instance
                assert not state.billing
            if instance in self.terminated_by_model:
                assert state.status in lc.TERMINAL
            if instance in self.provisioned_by_model:
                assert state.exists and state.requested_by == self.provisions[instance].id
                # Provisioning done means a server was recorded, or the instance ended/failed before.
                assert state.server_id is not None or state.status not in lc.BRINGING_UP | lc.SERVING

    def drain(self):
        self.ports.compute.faults.clear()
        self.ports.compute.ambiguous_creates = 0
        self.ports.store.crash_before_tags.clear()
        for _ in range(60):
            if not self.pending:
                return
            self.ports.clock.advance(1000)  # past every deadline: check timers stop
            self.deliver(*list(self.pending))
        raise AssertionError(f"deliveries never settled: {self.pending}")

    def check_end(self):
        """Terminate everything, drain: nothing may be left at the provider."""
        self.drain()
        for instance in INSTANCES:
            self.deliver(terminate(instance))
        self.drain()
        assert self.ports.compute.live_servers() == []


class EndToEnd(OrchestratorMachine):
    def teardown(self):
        try:
            self.check_end()
        finally:
            super().teardown()


EndToEnd.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestOrchestratorStateMachine = EndToEnd.TestCase
