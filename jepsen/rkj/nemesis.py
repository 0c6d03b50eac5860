"""Nemeses: faults on a schedule, each recorded in the timeline as a start and a stop event.

Every fault is bounded in time and undone by ``Cluster.heal_all`` at the end of the run even if
the schedule is interrupted.
"""

import os
import random
import shutil
import signal
import threading
import time

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

    # -------------------------------------------------------------- helpers

    def sleep(self, secs):
        return self.stop_ev.wait(secs)

    def start_fault(self, fault, nodes, **detail):
        self.seq += 1
        self.log("nemesis: %s %s %s" % (fault, nodes, detail or ""))
        return self.tl.add("start", fault, nodes, id=self.seq, **detail)["id"]

    def stop_fault(self, fault, fid, nodes=()):
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

    # -------------------------------------------------------------- faults

    def kill(self):
        target = self.leader_or_random(self.rng.random() < 0.5)
        fid = self.start_fault("kill", [target])
        self.c.kill(target)
        self.sleep(self.rng.uniform(2, 4))
        self.c.start(target)
        self.stop_fault("kill", fid, [target])
        self.sleep(self.rng.uniform(4, 7))

    def kill_all(self):
        """kill -9 of every node at once; the old leader comes back last, so the others elect a
        leader among themselves from whatever they had made durable."""
        lead = self.c.leader()
        nodes = self.members()
        fid = self.start_fault("kill-all", nodes, leader=lead)
        for i in nodes:
            self.c.kill(i)
        self.sleep(self.rng.uniform(0.5, 1))
        for i in nodes:
            if i != lead:
                self.c.start(i)
        self.sleep(self.rng.uniform(2.5, 3.5))
        for i in nodes:
            self.c.start(i)
        self.stop_fault("kill-all", fid, nodes)
        self.sleep(self.rng.uniform(5, 7))

    def pause(self):
        target = self.leader_or_random(self.rng.random() < 0.7)
        fid = self.start_fault("pause", [target])
        self.c.pause(target)
        self.sleep(self.rng.uniform(3, 6))
        self.c.resume(target)
        self.stop_fault("pause", fid, [target])
        self.sleep(self.rng.uniform(4, 6))

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
        fid = self.start_fault("partition", nodes, kind=kind,
                               groups=groups if groups else "bridge")
        if groups:
            self.c.partition(groups)
        else:
            # Bridge: the two ends cannot talk, the middle node talks to both.
            shuffled = nodes[:]
            self.rng.shuffle(shuffled)
            self.c.cut_pairs([(shuffled[0], shuffled[-1])])
        self.sleep(self.rng.uniform(5, 8))
        self.c.heal_partition()
        self.stop_fault("partition", fid, nodes)
        self.sleep(self.rng.uniform(4, 6))

    def isolate(self):
        """A long cut-off minority (one follower) for the stale-read workload."""
        one = self.rng.choice(self.followers())
        fid = self.start_fault("isolate", [one])
        self.c.partition([[one], [i for i in self.members() if i != one]])
        self.sleep(self.rng.uniform(8, 12))
        self.c.heal_partition()
        self.stop_fault("isolate", fid, [one])
        self.sleep(self.rng.uniform(4, 6))

    def isolate_clock(self):
        """A cut-off follower whose wall clock is stepped back mid-isolation (as NTP might): the
        lag it reports on stale answers must not shrink because of it."""
        one = self.rng.choice(self.followers())
        step = -self.rng.randint(60, 200)
        fid = self.start_fault("isolate", [one], clock_step=step)
        self.c.partition([[one], [i for i in self.members() if i != one]])
        self.sleep(self.rng.uniform(2, 3))
        self.set_skew(one, step)
        self.sleep(self.rng.uniform(6, 9))
        self.c.heal_partition()
        self.set_skew(one, 0)
        self.stop_fault("isolate", fid, [one])
        self.sleep(self.rng.uniform(4, 6))

    def clock_far(self):
        """One follower's wall clock 10 days behind for a long stretch (beyond the TC3 window:
        meant for --colocated-clients), the others exact."""
        one = self.rng.choice(self.followers())
        fid = self.start_fault("clock", [one], skews={one: -10 * 86400})
        self.set_skew(one, -10 * 86400)
        self.sleep(self.rng.uniform(15, 20))
        self.set_skew(one, 0)
        self.stop_fault("clock", fid, [one])
        self.sleep(self.rng.uniform(2, 4))

    def set_skew(self, node, secs):
        self.c.write_skew(self.c.nodes[node], secs)
        self.clock_changes.append((self.tl.history.now(), node, secs))

    def clock(self):
        """Every node's wall clock somewhere within +-240 s (inside the TC3 window, so clients
        still reach it); now and then the leader jumps 8 days ahead for a few seconds, which
        makes its scheduler delete every key whose 7-day window has passed by its clock."""
        self.clock_cycles += 1
        # At least one jump per run (from the third cycle on), so deletions do happen.
        if self.rng.random() < 0.3 or (self.clock_cycles >= 3 and not self.bumped):
            self.bumped = True
            lead = self.leader_or_random(True)
            fid = self.start_fault("clock-bump", [lead], skew="+8d")
            self.set_skew(lead, 8 * 86400)
            self.sleep(self.rng.uniform(3, 5))
            self.set_skew(lead, 0)
            self.stop_fault("clock-bump", fid, [lead])
        else:
            skews = {i: self.rng.randint(-240, 240) for i in self.members()}
            fid = self.start_fault("clock", list(skews), skews=skews)
            for i, s in skews.items():
                self.set_skew(i, s)
            self.sleep(self.rng.uniform(6, 9))
            for i in skews:
                self.set_skew(i, 0)
            self.stop_fault("clock", fid, list(skews))
        self.sleep(self.rng.uniform(1, 3))

    def fsync(self):
        """Restarts one node with fsync failing at random (libfiu); it must crash rather than
        acknowledge. Healed by a plain restart."""
        target = self.leader_or_random(self.rng.random() < 0.5)
        fid = self.start_fault("fsync", [target], spec=FSYNC_SPEC)
        self.c.kill(target)
        self.c.nodes[target].fiu = FSYNC_SPEC
        self.c.start(target)
        self.sleep(self.rng.uniform(6, 9))
        self.c.kill(target)
        self.c.nodes[target].fiu = None
        self.c.start(target)
        self.stop_fault("fsync", fid, [target])
        self.sleep(self.rng.uniform(4, 6))

    def membership(self):
        """Removes a follower under load, wipes it, and joins it back (learner, then voter)."""
        target = self.rng.choice(self.followers())
        fid = self.start_fault("membership", [target], change="remove+wipe+join")
        try:
            self.c.remove_node(target)
            self.sleep(self.rng.uniform(2, 4))
            self.c.rejoin_node(target)
        except Exception as e:  # recorded; the run's convergence check has the last word
            self.log("nemesis: membership change failed: %s" % e)
            self.tl.add("info", "membership", [target], error=str(e))
        self.stop_fault("membership", fid, [target])
        self.sleep(self.rng.uniform(5, 8))

    def latency(self):
        ms = self.rng.choice([20, 50, 100])
        fid = self.start_fault("latency", self.members(), ms=ms, jitter_ms=ms // 2)
        self.c.set_latency(ms, ms // 2)
        self.sleep(self.rng.uniform(6, 9))
        self.c.set_latency(0)
        self.stop_fault("latency", fid, self.members())
        self.sleep(self.rng.uniform(3, 5))

    # -------------------------------------------------------------- loop

    FAULTS = ("kill", "kill-all", "pause", "partition", "isolate", "isolate-clock", "clock",
              "clock-far", "fsync", "membership", "latency")

    def run(self):
        if self.faults not in (["clock"], ["clock-far"]):
            self.sleep(self.rng.uniform(2, 4))
        while not self.stop_ev.is_set():
            fault = self.rng.choice(self.faults)
            try:
                getattr(self, fault.replace("-", "_"))()
            except Exception as e:
                self.log("nemesis: %s raised %r" % (fault, e))
                self.tl.add("info", fault, [], error=repr(e))
                self.sleep(1)

    def start(self):
        if not self.faults:
            return
        self.thread = threading.Thread(target=self.run, daemon=True, name="nemesis")
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        if self.thread:
            self.thread.join(timeout=60)
