"""The nodes' audit trails as artifacts of a run (the ``audit`` checker, checkers.check_audit).

Every raftkms node keeps a hash-chained trail of one JSON record per API request it answered
(``<data-dir>/audit/seg-<20-digit first seq>.jsonl``; src/audit/). After the final reads and the
convergence wait, while the cluster still runs, ``collect``:

1. fetches the chain heads the nodes checkpointed through Raft (``GET /admin/audit/checkpoints``)
   into ``audit/checkpoints.json``;
2. runs the binary under test on each member's live trail: ``raftkms audit verify --dir <trail>
   --node-id I --json`` with the harness's admin connection (``--node --cluster-id --admin-cert
   --admin-key --cluster-ca``), so it checks the chain and the cluster's checkpoints;
   ``--offline`` (the chain alone) when the checkpoints cannot be fetched, and for the trails of
   a node wiped in the run (its node id's checkpoints then name records of two trails; the
   checker matches them against both);
3. copies every member's trail into the run directory, ``audit/n<I>/``, and verifies the copy
   ``--offline`` (the trail of a node the membership nemesis wiped was archived there as
   ``audit/n<I>-wiped-<K>/`` before the wipe, see ``archive``, and is verified offline), so the
   verdict can be re-derived from the run directory alone;
4. writes ``audit/manifest.json``: the trails (node, wiped or not), each verify's exit status,
   report and stderr (``copy``: the copy's; for the live trail of a wiped node also its verify
   against the checkpoints, ``online_not_judged``), the checkpoints, and what could not be
   done.

``load`` reads those artifacts back for the checker. Standard library only.
"""

import json
import os
import re
import shutil
import subprocess
import time

from .client import AdminError

AUDIT = "audit"  # the artifacts' directory in the run directory
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints.json"
SEGMENT = re.compile(r"^seg-\d{20}\.jsonl$")
TRAIL = re.compile(r"^n(\d+)(-wiped-\d+)?$")
# A node writes the records of reads within [audit] flush-interval-ms (100) of the answer; the
# copy waits that long, and more, after the last request of the run.
FLUSH_WAIT_S = 0.5
VERIFY_TIMEOUT_S = 120


def trail_dir(node):
    """A node's live trail: the default ``<data-dir>/audit`` (the harness sets no ``[audit]
    dir``)."""
    return os.path.join(node.data, "audit")


def segments(d):
    """The segment files of the trail in ``d``, oldest first (their names sort by first seq)."""
    return sorted(n for n in os.listdir(d) if SEGMENT.match(n))


def _ends_mid_line(path):
    size = os.path.getsize(path)
    if size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) != b"\n"


def copy_trail(src, dst, settle_s=3.0):
    """Copies the segment files of the trail in ``src`` into ``dst`` (made afresh). A running
    node's writer appends whole batches of lines: while the newest segment of the copy ends
    mid-line (a batch being written), the copy is taken again, for at most ``settle_s``. Returns
    the segment names copied; raises FileNotFoundError if ``src`` does not exist."""
    deadline = time.time() + settle_s
    while True:
        names = segments(src)
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        for n in names:
            shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))
        if not names or not _ends_mid_line(os.path.join(dst, names[-1])) \
                or time.time() > deadline:
            return names
        time.sleep(0.1)


def cut_torn_tail(d):
    """What a node does to its trail when it opens it after a crash (src/audit/segment.rs,
    ``recover``): the bytes after the newest segment's last newline are a torn line, cut away.
    Applied to a trail archived from a killed node (it is never opened again). Returns the number
    of bytes cut."""
    names = segments(d)
    if not names:
        return 0
    path = os.path.join(d, names[-1])
    with open(path, "rb") as f:
        data = f.read()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return 0
    with open(path, "wb") as f:
        f.write(data[:keep])
    return len(data) - keep


def archive(cluster, i):
    """Keeps node i's trail in the run directory before the membership nemesis wipes the node's
    data directory (the node is dead by then; its trail holds the records of every request it
    answered before the removal): ``audit/n<i>-wiped-<k>``, with a note
    ``audit/n<i>-wiped-<k>.json``. As the node would when opening it, a torn last line is cut. A
    node without a trail is noted ``absent`` (the checker then finds none of its records); a copy
    that failed is noted as an error (the checker leaves that node's records unchecked: UNKNOWN,
    not FAIL)."""
    base = os.path.join(cluster.run_dir, AUDIT)
    os.makedirs(base, exist_ok=True)
    k = 1
    while os.path.exists(os.path.join(base, "n%d-wiped-%d" % (i, k))):
        k += 1
    dst = os.path.join(base, "n%d-wiped-%d" % (i, k))
    note = {"node": i, "wiped": True}
    try:
        copy_trail(trail_dir(cluster.nodes[i]), dst, settle_s=0)
        note["torn_bytes_cut"] = cut_torn_tail(dst)
    except FileNotFoundError:
        note["absent"] = True
    except OSError as e:
        note["error"] = "archive of node %d's trail failed: %s" % (i, e)
    with open(dst + ".json", "w", encoding="utf-8") as f:
        json.dump(note, f)


def verify_command(cluster, trail, node_id, via=None):
    """The ``raftkms audit verify`` command for the trail copy in ``trail``: against the
    cluster's checkpoints fetched through node ``via``'s internal listener (mutual TLS with the
    run's admin certificate), or ``--offline`` if ``via`` is None."""
    cmd = [cluster.binary, "audit", "verify", "--dir", trail, "--node-id", str(node_id),
           "--json"]
    if via is None:
        return cmd + ["--offline"]
    cert, key = cluster.admin_cert()
    return cmd + ["--node", cluster.nodes[via].raft, "--cluster-id", cluster.cluster_id,
                  "--admin-cert", cert, "--admin-key", key, "--cluster-ca", cluster.ca_file]


def run_verify(cmd, timeout=VERIFY_TIMEOUT_S):
    """Runs a verify command: ``{"status", "report", "stderr", "mode", "command"}``. ``report``
    is the JSON report the command printed (None if it printed none: it could not read the trail
    or fetch the checkpoints, and then nothing was verified)."""
    out = {"command": cmd, "mode": "offline" if "--offline" in cmd else "checkpoints"}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        out.update(status=None, report=None, stderr=str(e))
        return out
    try:
        report = json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        report = None
    out.update(status=p.returncode, report=report if isinstance(report, dict) else None,
               stderr=p.stderr.strip()[-2000:])
    return out


def collect(cluster, run_dir, log=print):
    """Fetches, verifies and copies (module docstring); writes ``audit/manifest.json`` and
    returns its content. Never raises for what the nodes did: every failure is noted in the
    manifest (the checker turns a harness failure into UNKNOWN).

    The order matters, since a node keeps appending records (the harness's own admin calls are
    recorded too) and checkpoints its head every 2 s: the checkpoints are fetched first, then
    each live trail is verified (``audit verify`` fetches the checkpoints and only then reads the
    trail, so every checkpoint it compares names a record already on disk), then copied (the
    copy holds every record verified and every record ``checkpoints.json`` names), then the copy
    is verified ``--offline`` (the artifact's own chain)."""
    base = os.path.join(run_dir, AUDIT)
    os.makedirs(base, exist_ok=True)
    manifest = {"trails": {}, "verify": {}, "checkpoints": None, "checkpoints_error": None,
                "errors": []}  # errors: [{"node", "error"}], the harness's failures
    time.sleep(FLUSH_WAIT_S)
    # Archived trails of wiped nodes (``archive`` left a note beside each).
    wiped_nodes = set()
    for name in sorted(os.listdir(base)):
        if not (name.endswith(".json") and TRAIL.match(name[:-5])):
            continue
        with open(os.path.join(base, name), encoding="utf-8") as f:
            note = json.load(f)
        wiped_nodes.add(note["node"])
        if note.get("error"):
            manifest["errors"].append({"node": note["node"], "error": note["error"]})
        else:
            manifest["trails"][name[:-5]] = note
    members = [i for i in sorted(cluster.nodes) if i not in cluster.removed]
    # The checkpoints, from the first member that answers (a linearizable read on the node).
    via = None
    for i in members:
        try:
            manifest["checkpoints"] = cluster.admin(i, 10).request(
                "GET", "/admin/audit/checkpoints", timeout=10)
            via = i
            break
        except AdminError as e:
            manifest["checkpoints_error"] = str(e)
    if via is not None:
        manifest["checkpoints_error"] = None
        with open(os.path.join(base, CHECKPOINTS), "w", encoding="utf-8") as f:
            json.dump(manifest["checkpoints"], f, indent=1)
    # Archived trails: the chain alone (the node is gone; its id's checkpoints span two trails).
    for name, t in sorted(manifest["trails"].items()):
        if not t.get("absent"):
            manifest["verify"][name] = run_verify(
                verify_command(cluster, os.path.join(base, name), t["node"], None))
    # Live trails of the members: verified, copied, the copy verified.
    for i in members:
        name = "n%d" % i
        live = trail_dir(cluster.nodes[i])
        if not os.path.isdir(live):
            # A member without a trail: the checker reports every record of it missing.
            manifest["trails"][name] = {"node": i, "wiped": False, "absent": True}
            continue
        online = via is not None and i not in wiped_nodes
        res = run_verify(verify_command(cluster, live, i, via if online else None))
        if online and res["report"] is None:
            # Nothing verified (the checkpoints could not be fetched): the chain alone, at least.
            res = dict(run_verify(verify_command(cluster, live, i, None)), online_attempt=res)
        elif via is not None and not online:
            # The live trail of a node wiped in the run, against its node id's checkpoints
            # (which name records of the archived trail too): kept for the record, not judged.
            res["online_not_judged"] = run_verify(verify_command(cluster, live, i, via))
        try:
            copy_trail(live, os.path.join(base, name))
        except OSError as e:
            manifest["errors"].append({"node": i,
                                       "error": "copy of node %d's trail failed: %s" % (i, e)})
            manifest["verify"][name] = res
            continue
        manifest["trails"][name] = {"node": i, "wiped": False}
        res["copy"] = run_verify(verify_command(cluster, os.path.join(base, name), i, None))
        manifest["verify"][name] = res
    for name, res in sorted(manifest["verify"].items()):
        rep = res.get("report") or {}
        log("audit: %s %s: %s (%s records, %s checkpoints checked)%s" % (
            name, res["mode"], "intact" if res["status"] == 0 else
            (rep.get("problem") or res.get("stderr") or "not verified"),
            rep.get("records", "?"), rep.get("checkpoints_checked", "-"),
            "" if "copy" not in res else "; copy %s" % (
                "intact" if res["copy"]["status"] == 0 else "NOT intact")))
    with open(os.path.join(base, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True, default=str)
    return manifest


def read_trail(d):
    """The records of the trail copy in ``d``: ``(records, bad_lines)``; each record is the
    stored JSON object plus ``_file`` and ``_line``; a line that is not a JSON object is counted
    in ``bad_lines`` (``raftkms audit verify`` names it)."""
    records = []
    bad = 0
    for name in segments(d):
        with open(os.path.join(d, name), "rb") as f:
            for n, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                if not isinstance(rec, dict):
                    bad += 1
                    continue
                rec["_file"] = name
                rec["_line"] = n
                records.append(rec)
    return records, bad


# A node's log line for an answer withheld because its audit record could not be written
# (src/kms/audit.rs, `record`): the request id is one of its fields.
WITHHELD_LINE = "the answer is withheld"
WITHHELD_ID = re.compile(r'\brequest_id="?([^\s"]+)')
NODE_LOG = re.compile(r"^node(\d+)\.log$")


def withheld_in_logs(run_dir):
    """The request ids each node's log (``node<I>.log`` in the run directory) says it withheld
    an answer for: ``{node: {request_id}}``."""
    out = {}
    for name in os.listdir(run_dir):
        m = NODE_LOG.match(name)
        if not m:
            continue
        ids = set()
        with open(os.path.join(run_dir, name), encoding="utf-8", errors="replace") as f:
            for line in f:
                if WITHHELD_LINE in line:
                    rid = WITHHELD_ID.search(line)
                    if rid:
                        ids.add(rid.group(1))
        out[int(m.group(1))] = ids
    return out


def load(run_dir):
    """The artifacts ``collect`` left in ``run_dir`` for ``checkers.check_audit``: the manifest
    with each trail's records (``trails[name]["records"]``, ``["bad_lines"]``) and the answers
    each node's log says it withheld (``withheld_logged``, ``withheld_in_logs``). None if there
    is no manifest (nothing was collected)."""
    base = os.path.join(run_dir, AUDIT)
    try:
        with open(os.path.join(base, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    for name, t in manifest.get("trails", {}).items():
        if t.get("absent"):
            t["records"], t["bad_lines"] = [], 0
            continue
        try:
            t["records"], t["bad_lines"] = read_trail(os.path.join(base, name))
        except OSError as e:
            t["unreadable"] = str(e)
            t["records"], t["bad_lines"] = [], 0
    manifest["withheld_logged"] = withheld_in_logs(run_dir)
    return manifest


def recheck(run_dir):
    """The audit checker's verdict from a run directory alone (history.jsonl, nemesis.json and
    the audit artifacts): ``python3 -m rkj.audit RUN_DIR`` from jepsen/."""
    from . import checkers, history
    ops = history.pair(history.load(os.path.join(run_dir, "history.jsonl")))
    with open(os.path.join(run_dir, "nemesis.json"), encoding="utf-8") as f:
        events = json.load(f)
    return checkers.check_audit(ops, events, load(run_dir))


if __name__ == "__main__":
    import sys
    for d in sys.argv[1:] or sys.exit("usage: python3 -m rkj.audit RUN_DIR..."):
        out = recheck(d)
        print(json.dumps({d: out}, indent=1, sort_keys=True, default=str))
