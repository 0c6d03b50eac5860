"""Nemeses: faults on a schedule, each recorded in the timeline as a start and a stop event.

A fault's start is recorded only once the fault has been applied and its effect checked (the
process is gone, the iptables rules are in place, the node's own clock reports the skew, the
library is loaded, the proxy carries the traffic). A fault that could not be applied, or whose
effect is not there, is not recorded as a fault: it is a problem of the run (``Nemesis.result``),
which then fails (the effect is missing: ``FaultNotApplied``) or is UNKNOWN (the harness itself
could not act or check). After a problem the nemesis injects nothing more.

Every fault is bounded in time and undone by ``Cluster.heal_all`` at the end of the run even if
the schedule is interrupted.
"""

import random
import time
import threading

from .cluster import FaultNotApplied, NodeExited

FSYNC_SPEC = "enable_random name=posix/io/sync/*,probability=0.05"


class Timeline:
    def __init__(self, history):
        self.history = history
        self.events = []
        self.lock = threading.Lock()

    def add(self, event, fault, nodes=(), **detail):
        ev = {"t": self.history.now(), "event": event, "fault": fault, "nodes": list(nodes)}
        ev.update(detail)
        with self.lock:
            self.events.append(ev)
        return ev

    def windows(self):
        """(start_ns, end_ns, fault) for every fault; a fault never stopped ends at None."""
        open_ = {}
        out = []
        for ev in self.events:
            k = (ev["fault"], ev.get("id"))
            if ev["event"] == "start":
                open_[k] = ev
            elif ev["event"] == "stop" and k in open_:
                s = open_.pop(k)
                out.append((s["t"], ev["t"], ev["fault"]))
        for k, s in open_.items():
            out.append((s["t"], None, s["fault"]))
        return sorted(out, key=lambda w: w[0])


class Nemesis:
    """Runs ``faults`` (a list of names) in a loop until ``stop`` is set."""

    def __init__(self, cluster, timeline, faults, seed, log=print):
        self.c = cluster
        self.tl = timeline
        self.faults = faults
        self.rng = random.Random(seed)
        self.stop_ev = threading.Event()
        self.thread = None
        self.log = log
        self.seq = 0
        self.clock_changes = []  # (t_ns, node, skew_s)
        self.clock_cycles = 0
        self.bumped = False
        self.applied = 0  # faults applied and checked
        self.problems = []  # faults not applied / not undone, harness errors
        self.phase = "apply"

    # -------------------------------------------------------------- helpers

    def sleep(self, secs):
        return self.stop_ev.wait(secs)

    def inject(self, fault, nodes, apply, verify=None, **detail):
        """Applies a fault, checks that it took effect, and only then records its start (at the
        time it was known to be in effect; ``requested_t`` says when the harness began). An
        exception from ``apply`` or ``verify`` propagates to ``run_fault``: nothing is recorded
        as a fault."""
        self.phase = "apply"
        requested = self.tl.history.now()
        self.log("nemesis: %s %s %s" % (fault, nodes, detail or ""))
        apply()
        if verify is not None:
            verify()
        self.seq += 1
        self.applied += 1
        self.tl.add("start", fault, nodes, id=self.seq, requested_t=requested, **detail)
        self.phase = "undo"
        return self.seq

    def undo(self, fault, fid, nodes, action, verify=None):
        """Ends a fault; its stop is recorded once the undo is done (and checked)."""
        self.phase = "undo"
        action()
        if verify is not None:
            verify()
        self.tl.add("stop", fault, nodes, id=fid)

    def members(self):
        return [i for i in self.c.nodes if i not in self.c.removed]

    def leader_or_random(self, prefer_leader):
        if prefer_leader:
            lead = self.c.leader()
            if lead in self.c.nodes:
                return lead
        return self.rng.choice(self.members())

    def followers(self):
        lead = self.c.leader()
        return [i for i in self.members() if i != lead] or self.members()

    def set_skew(self, node, secs):
        """Writes node's libfaketime offset. The change is noted for the deletion checker with
        the time before the write (the earliest it can take effect), once the write succeeded."""
        t = self.tl.history.now()
        self.c.write_skew(self.c.nodes[node], secs)
        self.clock_changes.append((t, node, secs))

    def set_skews(self, skews):
        for i, s in skews.items():
            self.set_skew(i, s)

    def verify_skews(self, skews):
        for i, s in skews.items():
            self.c.verify_clock(i, s)

    def cut(self, groups):
        """The ordered pairs (a, b) of members in different groups: a drops b's traffic."""
        group_of = {i: gi for gi, g in enumerate(groups) for i in g}
        nodes = self.members()
        return [(a, b) for a in nodes for b in nodes
                if a != b and group_of.get(a) != group_of.get(b)]

    # -------------------------------------------------------------- faults

    def kill(self):
        target = self.leader_or_random(self.rng.random() < 0.5)
        fid = self.inject("kill", [target], lambda: self.c.kill(target),
                          lambda: self.c.verify_gone(target))
        self.sleep(self.rng.uniform(2, 4))
        self.undo("kill", fid, [target], lambda: self.c.start(target))
        self.sleep(self.rng.uniform(4, 7))

    def root_rotate(self):
        """A root-key rotation under load, through a random live member: the next version
        installed, the leader's re-wrap of every stored value waited for (at most 60 s; the fault
        is in effect once nothing is under an older version), then the older versions retired
        (the undo; checked: only the new version is left). Clients keep going throughout; the
        workload's checkers say whether any request failed because of it."""
        target = self.rng.choice([i for i in self.members()
                                  if self.c.nodes[i].alive() and not self.c.nodes[i].paused])
        rotated = {}

        def apply():
            rotated["version"] = self.c.rotate_root_key(target)

        fid = self.inject("root-rotate", [target], apply,
                          lambda: self.c.verify_rewrapped(target, rotated["version"]))
        self.sleep(self.rng.uniform(1, 2))
        self.undo("root-rotate", fid, [target], lambda: self.c.retire_root_keys(target))
        self.sleep(self.rng.uniform(2, 4))

    def kill_all(self):
        """kill -9 of every node at once; the old leader comes back last, so the others elect a
        leader among themselves from whatever they had made durable."""
        lead = self.c.leader()
        nodes = self.members()

        def apply():
            for i in nodes:
                self.c.kill(i)

        def verify():
            for i in nodes:
                self.c.verify_gone(i)
        fid = self.inject("kill-all", nodes, apply, verify, leader=lead)
        self.restart_all("kill-all", fid, nodes, lead)

    def restart_all(self, fault, fid, nodes, lead):
        """After a fault that stopped every node: the others restart first, the old leader
        2.5-3.5 s later, so they elect a leader among themselves from what they made durable."""
        self.sleep(self.rng.uniform(0.5, 1))

        def restart():
            for i in nodes:
                if i != lead:
                    self.c.start(i)
            self.sleep(self.rng.uniform(2.5, 3.5))
            for i in nodes:
                self.c.start(i)
        self.undo(fault, fid, nodes, restart)
        self.sleep(self.rng.uniform(5, 7))

    def power(self):
        """Power loss of the leader or a random node: kill -9, and its disk (lazyfs) drops every
        write, create, rename and unlink it had not fsynced; restarted after 1.5-3 s."""
        target = self.leader_or_random(self.rng.random() < 0.5)
        cut = {}
        fid = self.inject("power", [target], lambda: cut.update(self.c.power_cut(target)),
                          lambda: self.c.verify_power_cut(target, cut))
        self.tl.add("dropped", "power", [target], id=fid, **self._dropped(cut))
        self.sleep(self.rng.uniform(1.5, 3))
        self.undo("power", fid, [target], lambda: self.c.start(target))
        self.sleep(self.rng.uniform(4, 7))

    @staticmethod
    def _dropped(cut):
        return {"dropped_bytes": cut.get("dropped_bytes"),
                "dropped_entries": cut.get("dropped_entries")}

    def power_all(self):
        """Power loss of every node at once (a data centre): each disk drops what it had not
        fsynced; the old leader comes back last, as in kill-all."""
        lead = self.c.leader()
        nodes = self.members()
        cuts = {}

        def apply():
            # Every process dies before any disk is cut: nothing runs between the two.
            for i in nodes:
                self.c.kill(i)
            for i in nodes:
                cuts[i] = self.c.power_cut(i)

        def verify():
            for i in nodes:
                self.c.verify_power_cut(i, cuts[i])
        fid = self.inject("power-all", nodes, apply, verify, leader=lead)
        for i in nodes:
            self.tl.add("dropped", "power-all", [i], id=fid, **self._dropped(cuts[i]))
        self.restart_all("power-all", fid, nodes, lead)

    def pause(self):
        target = self.leader_or_random(self.rng.random() < 0.7)
        fid = self.inject("pause", [target], lambda: self.c.pause(target),
                          lambda: self.c.verify_stopped(target, True))
        self.sleep(self.rng.uniform(3, 6))
        self.undo("pause", fid, [target], lambda: self.c.resume(target),
                  lambda: self.c.verify_stopped(target, False))
        self.sleep(self.rng.uniform(4, 6))

    def pause_follower(self):
        """A follower (with follower leases: a lease holder) stopped well past its lease
        (SIGSTOP, as a long GC pause would): while it is stopped the leader waits out the
        lease it counts and acknowledges writes again; once resumed, the node must not answer
        from its old state under the lease it held before the pause. A short pause, so that
        requests sent to it during the pause are still waiting when it resumes."""
        target = self.rng.choice(self.followers())
        fid = self.inject("pause", [target], lambda: self.c.pause(target),
                          lambda: self.c.verify_stopped(target, True), follower=True)
        self.sleep(self.rng.uniform(1.5, 3))
        self.undo("pause", fid, [target], lambda: self.c.resume(target),
                  lambda: self.c.verify_stopped(target, False))
        self.sleep(self.rng.uniform(2, 3))

    def slow_follower(self):
        """Latency on one follower's Raft links only (its proxy): the leader and the other
        follower make a quorum without it, so it receives each write tens of milliseconds after
        a quorum has it. With follower leases that node is still a holder (its lease round
        trips fit in the lease), and a write must not be acknowledged before it has it."""
        target = self.rng.choice(self.followers())
        ms = self.rng.choice([50, 70, 90])
        fid = self.inject("latency", [target],
                          lambda: self.c.set_latency(ms, ms // 5, nodes=[target]),
                          lambda: self.c.verify_latency(nodes=[target]), ms=ms,
                          jitter_ms=ms // 5)
        self.sleep(self.rng.uniform(8, 11))
        self.undo("latency", fid, [target], lambda: self.c.set_latency(0))
        self.sleep(self.rng.uniform(1.5, 2.5))

    def partition(self):
        nodes = self.members()
        kind = self.rng.choice(["isolate-leader", "majority-minority", "bridge"])
        if kind == "isolate-leader":
            one = self.leader_or_random(True)
            groups = [[one], [i for i in nodes if i != one]]
        elif kind == "majority-minority":
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            k = len(nodes) // 2
            groups = [shuffled[:k], shuffled[k:]]
        else:
            groups = None
        if groups:
            pairs = self.cut(groups)
            apply = lambda: self.c.partition(groups)  # noqa: E731
        else:
            # Bridge: the two ends cannot talk, the middle node talks to both.
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            ends = (shuffled[0], shuffled[-1])
            pairs = [ends, ends[::-1]]
            apply = lambda: self.c.cut_pairs([ends])  # noqa: E731
        fid = self.inject("partition", nodes, apply, lambda: self.c.verify_cut(pairs),
                          kind=kind, groups=groups if groups else "bridge")
        self.sleep(self.rng.uniform(5, 8))
        self.undo("partition", fid, nodes, self.c.heal_partition, self.c.verify_healed)
        self.sleep(self.rng.uniform(4, 6))

    def isolate(self):
        """A long cut-off minority (one follower) for the stale-read workload."""
        one = self.rng.choice(self.followers())
        groups = [[one], [i for i in self.members() if i != one]]
        fid = self.inject("isolate", [one], lambda: self.c.partition(groups),
                          lambda: self.c.verify_cut(self.cut(groups)))
        self.sleep(self.rng.uniform(8, 12))
        self.undo("isolate", fid, [one], self.c.heal_partition, self.c.verify_healed)
        self.sleep(self.rng.uniform(4, 6))

    def isolate_clock(self):
        """A cut-off follower whose wall clock is stepped back mid-isolation (as NTP might): the
        lag it reports on stale answers must not shrink because of it. The step is a fault of
        its own inside the isolation."""
        one = self.rng.choice(self.followers())
        step = -self.rng.randint(60, 200)
        groups = [[one], [i for i in self.members() if i != one]]
        fid = self.inject("isolate", [one], lambda: self.c.partition(groups),
                          lambda: self.c.verify_cut(self.cut(groups)), clock_step=step)
        self.sleep(self.rng.uniform(2, 3))
        skew = {one: step}
        cid = self.inject("clock", [one], lambda: self.set_skews(skew),
                          lambda: self.verify_skews(skew), skews=skew)
        self.sleep(self.rng.uniform(6, 9))
        self.undo("isolate", fid, [one], self.c.heal_partition, self.c.verify_healed)
        back = {one: 0}
        self.undo("clock", cid, [one], lambda: self.set_skews(back),
                  lambda: self.verify_skews(back))
        self.sleep(self.rng.uniform(4, 6))

    def clock_far(self):
        """One follower's wall clock 10 days behind for a long stretch (beyond the TC3 window:
        meant for --colocated-clients), the others exact."""
        one = self.rng.choice(self.followers())
        skew = {one: -10 * 86400}
        fid = self.inject("clock", [one], lambda: self.set_skews(skew),
                          lambda: self.verify_skews(skew), skews=skew)
        self.sleep(self.rng.uniform(15, 20))
        back = {one: 0}
        self.undo("clock", fid, [one], lambda: self.set_skews(back),
                  lambda: self.verify_skews(back))
        self.sleep(self.rng.uniform(2, 4))

    def clock(self):
        """Every node's wall clock somewhere within +-240 s (inside the TC3 window, so clients
        still reach it); now and then the leader jumps 8 days ahead for a few seconds, which
        makes its scheduler delete every key whose 7-day window has passed by its clock."""
        self.clock_cycles += 1
        # At least one jump per run (by the second cycle, so that even a 25 s run has one):
        # without deletions the deletion checker has nothing to check (UNKNOWN).
        if self.rng.random() < 0.3 or (self.clock_cycles >= 2 and not self.bumped):
            self.bumped = True
            lead = self.leader_or_random(True)
            skew = {lead: 8 * 86400}
            fid = self.inject("clock-bump", [lead], lambda: self.set_skews(skew),
                              lambda: self.verify_skews(skew), skew="+8d")
            self.sleep(self.rng.uniform(3, 5))
            back = {lead: 0}
            self.undo("clock-bump", fid, [lead], lambda: self.set_skews(back),
                      lambda: self.verify_skews(back))
        else:
            skews = {i: self.rng.randint(-240, 240) for i in self.members()}
            fid = self.inject("clock", list(skews), lambda: self.set_skews(skews),
                              lambda: self.verify_skews(skews), skews=skews)
            self.sleep(self.rng.uniform(6, 9))
            back = {i: 0 for i in skews}
            self.undo("clock", fid, list(skews), lambda: self.set_skews(back),
                      lambda: self.verify_skews(back))
        self.sleep(self.rng.uniform(1, 3))

    def clock_rate(self):
        """A follower (with follower leases: a lease holder) restarted with every clock of it,
        the monotonic one included, running at 0.6x or 1.6x real time, for 8-11 s; then
        restarted with real clocks. Within the factor of two the lease design assumes between
        any two nodes' clock rates (docs/architecture.md 6a): a correct build stays
        linearizable. The rate is checked on the node's HTTP `Date` header."""
        target = self.rng.choice(self.followers())
        rate = self.rng.choice([0.6, 1.6])
        node = self.c.nodes[target]

        def restart(r):
            self.c.kill(target)
            self.c.verify_gone(target)
            node.clock_rate = r
            self.c.start(target)
            self.c.wait_answering(target, time.time() + 30)
        fid = self.inject("clock-rate", [target], lambda: restart(rate),
                          lambda: self.c.verify_clock_rate(target, rate), rate=rate)
        self.sleep(self.rng.uniform(8, 11))
        self.undo("clock-rate", fid, [target], lambda: restart(None))
        self.sleep(self.rng.uniform(3, 5))

    def fsync(self):
        """Restarts one node with fsync failing at random (libfiu); it must crash rather than
        acknowledge. Healed by a plain restart. ``Cluster.start`` checks that the node runs with
        libfiu's libraries loaded and the failpoint enabled; a node that exits before that could
        be checked (it may hit a failing fsync at once) is started again, at most 3 times."""
        target = self.leader_or_random(self.rng.random() < 0.5)

        def apply():
            self.c.kill(target)
            self.c.verify_gone(target)
            self.c.nodes[target].fiu = FSYNC_SPEC
            for attempt in range(3):
                try:
                    self.c.start(target)
                    return
                except NodeExited as e:
                    if attempt == 2:
                        raise
                    self.log("nemesis: fsync: %s; starting again" % e)
        fid = self.inject("fsync", [target], apply, spec=FSYNC_SPEC)
        self.sleep(self.rng.uniform(6, 9))

        def restart():
            self.c.kill(target)
            self.c.nodes[target].fiu = None
            self.c.start(target)
        self.undo("fsync", fid, [target], restart)
        self.sleep(self.rng.uniform(4, 6))

    def membership(self):
        """Removes a follower under load, wipes it, and joins it back (learner, then voter). A
        removal or a join the cluster refuses is a fault not applied (or not undone): the run
        fails, since a node left out would also be left out of the final checks."""
        target = self.rng.choice(self.followers())
        fid = self.inject("membership", [target], lambda: self.c.remove_node(target),
                          lambda: self.c.verify_membership(target, voter=False),
                          change="remove+wipe+join")
        self.sleep(self.rng.uniform(2, 4))
        self.undo("membership", fid, [target], lambda: self.c.rejoin_node(target),
                  lambda: self.c.verify_membership(target, voter=True))
        self.sleep(self.rng.uniform(5, 8))

    def latency(self):
        ms = self.rng.choice([20, 50, 100])
        fid = self.inject("latency", self.members(), lambda: self.c.set_latency(ms, ms // 2),
                          self.c.verify_latency, ms=ms, jitter_ms=ms // 2)
        self.sleep(self.rng.uniform(6, 9))
        self.undo("latency", fid, self.members(), lambda: self.c.set_latency(0))
        self.sleep(self.rng.uniform(3, 5))

    # -------------------------------------------------------------- loop

    FAULTS = ("kill", "kill-all", "power", "power-all", "pause", "partition", "isolate", "isolate-clock", "clock",
              "clock-far", "fsync", "membership", "latency", "root-rotate", "pause-follower", "slow-follower", "clock-rate")

    def run_fault(self, fault):
        """One fault, applied, checked and undone. Returns False (and notes a problem) if it could
        not be: FaultNotApplied (the effect is missing: the run fails) or any other exception
        (the harness could not act: the run is UNKNOWN)."""
        self.phase = "apply"
        try:
            getattr(self, fault.replace("-", "_"))()
            return True
        except FaultNotApplied as e:
            kind = "fault-not-applied" if self.phase == "apply" else "fault-not-undone"
            err = e
        except Exception as e:  # noqa: BLE001 -- every other failure is the harness's
            kind = "harness-error"
            err = e
        self.problem(kind, fault, err)
        return False

    def problem(self, kind, fault, err):
        p = {"type": kind, "fault": fault, "phase": self.phase, "t": self.tl.history.now(),
             "error": "%s: %s" % (type(err).__name__, err)}
        self.log("nemesis: %s: %s (%s)" % (kind, fault, p["error"]))
        with self.tl.lock:
            self.problems.append(p)
        self.tl.add("error", fault, [], kind=kind, phase=self.phase, error=p["error"])

    def run(self):
        if self.faults not in (["clock"], ["clock-far"]):
            self.sleep(self.rng.uniform(2, 4))
        # Every requested fault in turn, in a fresh random order each round: a short run with
        # several faults applies each of them (a random choice per step could miss one).
        while not self.stop_ev.is_set():
            order = list(self.faults)
            self.rng.shuffle(order)
            for fault in order:
                if self.stop_ev.is_set():
                    return
                if not self.run_fault(fault):
                    self.log("nemesis: no more faults in this run (the heal undoes what is left)")
                    return

    def start(self):
        if not self.faults:
            return
        self.thread = threading.Thread(target=self.run, daemon=True, name="nemesis")
        self.thread.start()

    def stop(self, timeout=60):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(timeout=timeout)
            if self.thread.is_alive():
                self.problem("harness-error", "nemesis",
                             RuntimeError("the nemesis did not stop within %d s" % timeout))

    def result(self):
        """The nemesis as a checker: FAIL if a fault was not applied (or not undone), UNKNOWN if
        the harness could not act, or if faults were asked for and none was applied."""
        with self.tl.lock:
            problems = list(self.problems)
        failed = [p for p in problems if p["type"] != "harness-error"]
        errors = [p for p in problems if p["type"] == "harness-error"]
        out = {"valid": True, "anomaly_count": len(failed), "anomalies": failed[:20],
               "harness_errors": errors[:20], "faults_requested": list(self.faults),
               "faults_applied": self.applied}
        if failed:
            out["valid"] = False
        elif errors:
            out["valid"] = None
        elif self.faults and self.applied == 0:
            out["valid"] = None
            out["unknown"] = "faults were asked for, none was applied"
        return out
