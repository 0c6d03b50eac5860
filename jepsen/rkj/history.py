"""The history: invocations and completions, as JSON lines, with monotonic timestamps.

Jepsen's contract: ``ok`` definitely happened, ``fail`` definitely did not, ``info`` is unknown and
stays open for the rest of the history. A process with an ``info`` op is retired; its client goes
on under a fresh process number.
"""

import json
import threading
import time

INF = float("inf")


class History:
    """Appends events to ``path`` (one JSON object per line) and keeps them in memory."""

    def __init__(self, path):
        self.path = path
        self.t0 = time.monotonic_ns()
        self.wall0 = time.time()
        self.lock = threading.Lock()
        self.events = []
        self.f = open(path, "w", encoding="utf-8")

    def now(self):
        """Nanoseconds since the start of the run (monotonic)."""
        return time.monotonic_ns() - self.t0

    def wall(self, t_ns):
        """Harness wall-clock seconds of a history time."""
        return self.wall0 + t_ns / 1e9

    def _add(self, ev):
        with self.lock:
            ev["index"] = len(self.events)
            ev["t"] = self.now()
            self.events.append(ev)
            self.f.write(json.dumps(ev, separators=(",", ":")) + "\n")
        return ev

    def invoke(self, process, f, value, node):
        return self._add({"type": "invoke", "process": process, "f": f, "value": value,
                          "node": node})

    def complete(self, invocation, kind, value=None, error=None, extra=None):
        ev = {"type": kind, "process": invocation["process"], "f": invocation["f"],
              "value": value if value is not None else invocation["value"],
              "node": invocation["node"]}
        if error:
            ev["error"] = error
        if extra:
            ev.update(extra)
        return self._add(ev)

    def close(self):
        with self.lock:
            self.f.close()


class Op:
    """An invocation paired with its completion (``type`` is ok / fail / info)."""

    __slots__ = ("process", "f", "value", "result", "type", "start", "end", "node", "error",
                 "extra", "index")

    def __init__(self, inv, cmp):
        self.process = inv["process"]
        self.f = inv["f"]
        self.value = inv["value"]
        self.node = inv.get("node")
        self.start = inv["t"]
        self.index = inv["index"]
        if cmp is None:
            self.type = "info"
            self.end = INF
            self.result = None
            self.error = "no completion"
            self.extra = {}
        else:
            self.type = cmp["type"]
            # An unknown outcome may take effect at any later time.
            self.end = INF if cmp["type"] == "info" else cmp["t"]
            self.result = cmp.get("value")
            self.error = cmp.get("error")
            self.extra = {k: v for k, v in cmp.items()
                          if k not in ("type", "process", "f", "value", "node", "t", "index",
                                       "error")}

    def __repr__(self):
        return "Op(p%s %s %r -> %s %r [%s, %s] n%s)" % (
            self.process, self.f, self.value, self.type, self.result, self.start, self.end,
            self.node)

    def to_json(self):
        return {"process": self.process, "f": self.f, "value": self.value, "type": self.type,
                "result": self.result, "start": self.start,
                "end": None if self.end == INF else self.end, "node": self.node,
                "error": self.error}


def pair(events):
    """Pairs invocations with completions by process; unmatched invocations become ``info``."""
    open_by_process = {}
    ops = []
    for ev in events:
        if ev["type"] == "invoke":
            if ev["process"] in open_by_process:
                raise ValueError("process %s invoked twice without completing" % ev["process"])
            open_by_process[ev["process"]] = ev
        else:
            inv = open_by_process.pop(ev["process"], None)
            if inv is None:
                raise ValueError("completion without invocation: %r" % ev)
            ops.append(Op(inv, ev))
    for inv in open_by_process.values():
        ops.append(Op(inv, None))
    ops.sort(key=lambda o: o.start)
    return ops


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
