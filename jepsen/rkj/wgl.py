"""Linearizability of one object's history: a Wing–Gong search with Lowe's memoisation (the
algorithm of Knossos' ``wgl`` and Porcupine).

A history is checked per key (P-compositionality: a history is linearizable iff every key's
sub-history is). ``fail`` ops are dropped (they did not happen); ``info`` ops stay open until the
end of time: an unknown write may take effect at any point after its invocation (or, equivalently
for a register, at the very end, i.e. never as far as anyone observed); an unknown read tells
nothing and is dropped.
"""

from .history import INF


class Model:
    """A sequential specification: ``step(state, op)`` returns the next state or None."""

    init = None

    def step(self, state, op):
        raise NotImplementedError


class Result:
    def __init__(self, valid, ops=0, steps=0, stuck=None, window=None, reason=None):
        self.valid = valid  # True, False, or None (search budget exhausted)
        self.ops = ops
        self.steps = steps
        self.stuck = stuck
        self.window = window or []
        self.reason = reason

    def to_json(self):
        return {"valid": self.valid, "ops": self.ops, "steps": self.steps,
                "stuck": self.stuck.to_json() if self.stuck is not None else None,
                "window": [o.to_json() for o in self.window], "reason": self.reason}


def check(ops, model, is_read, budget=3_000_000):
    """Checks one object's ops (``history.Op``) against ``model``; ``is_read(op)`` says which ops
    have no effect (dropped when their outcome is unknown)."""
    ops = [o for o in ops if o.type == "ok" or (o.type == "info" and not is_read(o))]
    n = len(ops)
    if n == 0:
        return Result(True)
    # Entries: (time, kind, op) with calls (kind 0) before returns (kind 1) at equal times, so
    # that ops touching at one instant count as concurrent.
    entries = []
    for i, o in enumerate(ops):
        entries.append((o.start, 0, i))
        entries.append((o.end, 1, i))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    m = len(entries)
    # Doubly linked list over entry positions 1..m, with 0 as the head sentinel.
    nxt = list(range(1, m + 2))
    prv = list(range(-1, m + 1))
    kind = [None] + [e[1] for e in entries]
    opi = [None] + [e[2] for e in entries]
    ret_pos = [0] * n
    for pos in range(1, m + 1):
        if kind[pos] == 1:
            ret_pos[opi[pos]] = pos
    END = m + 1

    def lift(pos):
        r = ret_pos[opi[pos]]
        nxt[prv[pos]] = nxt[pos]
        prv[nxt[pos]] = prv[pos]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]

    def unlift(pos):
        r = ret_pos[opi[pos]]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        nxt[prv[pos]] = pos
        prv[nxt[pos]] = pos

    # Symmetry: unknown ops that are identical (same f and value) are interchangeable once both
    # have been invoked, so they are linearized only in invocation order. Without this, k
    # unknown writes of one value would multiply the search by 2^k instead of k + 1.
    prev_same = [None] * n
    last_of = {}
    for i, o in enumerate(ops):
        if o.type == "info":
            sig = (o.f, repr(sorted(o.value.items())) if isinstance(o.value, dict) else
                   repr(o.value))
            prev_same[i] = last_of.get(sig)
            last_of[sig] = i

    state = model.init
    linearized = 0
    cache = set()
    stack = []
    pos = nxt[0]
    steps = 0
    deepest = -1
    stuck_op = None
    while nxt[0] != END:
        steps += 1
        if steps > budget:
            return Result(None, n, steps, reason="search budget exhausted")
        if kind[pos] == 0:
            i = opi[pos]
            p = prev_same[i]
            if p is not None and not (linearized >> p) & 1:
                pos = nxt[pos]
                continue
            new = model.step(state, ops[i])
            if new is not None:
                lin = linearized | (1 << i)
                if (lin, new) not in cache:
                    cache.add((lin, new))
                    stack.append((pos, state))
                    state = new
                    linearized = lin
                    lift(pos)
                    pos = nxt[0]
                    continue
            pos = nxt[pos]
        else:
            # A return before its call was linearized: undo the last choice.
            if len(stack) > deepest:
                deepest = len(stack)
                stuck_op = ops[opi[pos]]
            if not stack:
                return _fail(ops, n, steps, stuck_op)
            pos, state = stack.pop()
            linearized &= ~(1 << opi[pos])
            unlift(pos)
            pos = nxt[pos]
    return Result(True, n, steps)


def _fail(ops, n, steps, stuck):
    window = []
    if stuck is not None:
        lo = stuck.start
        hi = stuck.end
        window = [o for o in ops if o.start <= hi and o.end >= lo][:30]
    return Result(False, n, steps, stuck=stuck, window=window,
                  reason="no linearization completes op %r" % (stuck,))


class KeyStateModel(Model):
    """A key's state as seen by the register workload: (enabled, description).

    Writes: ``enable``, ``disable``, ``set-desc`` (value ``desc``). Reads: ``describe`` (result
    ``{"enabled": bool, "desc": str}``) and ``encrypt`` (result ``{"enabled": bool}``: a ciphertext
    means Enabled was observed, ResourceUnavailable.CmkDisabled means Disabled was)."""

    def __init__(self, init=(True, "")):
        self.init = init

    def step(self, state, op):
        enabled, desc = state
        f = op.f
        if f == "enable":
            return (True, desc)
        if f == "disable":
            return (False, desc)
        if f == "set-desc":
            return (enabled, op.value["desc"])
        r = op.result or {}
        if f == "describe":
            if r.get("enabled") == enabled and r.get("desc") == desc:
                return state
            return None
        if f == "encrypt":
            return state if r.get("enabled") == enabled else None
        raise ValueError("unknown op %s" % f)


def is_read(op):
    return op.f in ("describe", "encrypt")


__all__ = ["check", "Model", "KeyStateModel", "Result", "is_read", "INF"]
