"""A real raftkms cluster for one run: `raftkms serve` processes with their own data directories
and TOML configs, each in its own network namespace (veth into one bridge), so partitions are
plain iptables DROP rules inside the namespaces. Everything it creates is named ``rkj*`` and is
torn down by ``teardown()`` (also called from signal handlers and atexit by the runner).

The cluster runs as a deployment does: TLS on the API, mutual TLS on the internal listener, with a
CA, node certificates and an admin certificate made per run by the binary under test
(``raftkms cert``) in the work directory's ``tls/``, which goes with the work directory.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time

from .client import AdminClient, AdminError, KmsClient, tls_context
from . import audit as audit_mod
from . import lazyfs as lazyfs_mod
from . import proxy as proxy_mod

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# What `fiu-run -x` preloads (it overwrites LD_PRELOAD with exactly these).
FIU_LIB_DIR = "/usr/lib/fiu"
FIU_LIBS = [os.path.join(FIU_LIB_DIR, "fiu_run_preload.so"),
            os.path.join(FIU_LIB_DIR, "fiu_posix_preload.so")]
SUBNET = "10.213.47"  # our own bridge; node i is SUBNET.i, the host side SUBNET.254
BRIDGE = "rkjbr0"
API_PORT = 31081
RAFT_PORT = 31091
PROXY_BASE = 31300  # on the host side of the bridge, one per node
FORWARD_COMMENT = "rkjepsen"
REGION = "ap-singapore"
# The power nemeses serve each node's disk through rkj/lazyfs.py: a Python with mfusepy (jepsen/README.md).
LAZYFS_PYTHON = os.environ.get("RKJ_LAZYFS_PYTHON", "/var/cache/raftkms/jepsen-venv/bin/python")
LAZYFS_FSNAME = "rkjlazyfs"
JEPSEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN_NAME = "jepsen"  # the admin certificate's name: tls/admin-jepsen.pem
# Runs that move node clocks issue their certificates under libfaketime this far in the past: a
# node verifies its peers' certificates by its own clock, and clock-far sets one 10 days behind
# (raftkms backdates a certificate by one hour only). Without this every handshake that node takes
# part in during the fault would fail (connections opened before it are reused, so a run may not
# show it): a cut-off node, not merely a skewed one.
CERT_BACKDATE = "-30d"


class FaultNotApplied(Exception):
    """The harness acted, but the fault's effect is not there (checked: the process still runs,
    the rule is missing, the node's clock is not skewed, the library is not loaded, the proxy
    carries no traffic). A run with such a fault fails: it did not test what it claims."""


class HarnessError(Exception):
    """The harness could not act or could not check (a tool or library missing, a command
    failed, a node did not answer the check). The run's verdict is UNKNOWN."""


class NodeExited(HarnessError):
    """A node exited before the harness could check how it was started."""


def check_tools(faketime=False, fiu=False, lazyfs=False):
    """The tools a run needs exist; raises HarnessError naming what is missing."""
    missing = [t for t in ("ip", "iptables") if shutil.which(t) is None]
    if lazyfs:
        if not os.path.exists("/dev/fuse"):
            missing.append("/dev/fuse")
        if shutil.which("fusermount3") is None:
            missing.append("fusermount3 (Debian's fuse3)")
        if not os.access(LAZYFS_PYTHON, os.X_OK):
            missing.append("a Python with mfusepy at %s (jepsen/setup-lazyfs)" % LAZYFS_PYTHON)
        elif subprocess.run([LAZYFS_PYTHON, "-c", "import mfusepy"],
                            capture_output=True).returncode != 0:
            missing.append("mfusepy in %s (jepsen/setup-lazyfs)" % LAZYFS_PYTHON)
    if faketime and not os.path.exists(FAKETIME_LIB):
        missing.append("libfaketime (%s)" % FAKETIME_LIB)
    if fiu:
        if shutil.which("fiu-run") is None:
            missing.append("fiu-run (libfiu's fiu-utils)")
        missing += ["libfiu (%s)" % lib for lib in FIU_LIBS if not os.path.exists(lib)]
    if missing:
        raise HarnessError("required tools missing: %s" % ", ".join(missing))


def proc_state(pid):
    """The state letter of /proc/<pid>/stat (R, S, T, Z...), or None if there is no such
    process."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def sh(*args, check=True, quiet=False):
    """Runs a command; returns CompletedProcess. Never uses a shell."""
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(args), p.returncode,
                                                   (p.stderr or p.stdout).strip()))
    return p


def ns_name(i):
    return "rkj-n%d" % i


def lazyfs_mounts():
    """Mount points of our lazyfs filesystems (from /proc/mounts)."""
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            return [line.split()[1] for line in f if line.split()[0] == LAZYFS_FSNAME]
    except OSError:
        return []


def cleanup_leftovers():
    """Removes whatever an earlier, killed run left behind (our names only)."""
    for m in lazyfs_mounts():
        sh("fusermount3", "-u", "-z", m, check=False)
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("rkj-n"):
            pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", name, check=False)
    # The kernel destroys a deleted namespace, and the veth pair in it, asynchronously: under load
    # the host ends can outlive this call and the next run's `ip link add` would fail. Remove our
    # host ends ourselves and wait (bounded) until none is left.
    deadline = time.time() + 10
    while True:
        ours = _our_links()
        for link in ours:
            sh("ip", "link", "del", link, check=False)
        if not ours or time.time() > deadline:
            break
        time.sleep(0.2)
    sh("ip", "link", "del", BRIDGE, check=False)
    _forward_rule("-D", check=False)


def _our_links():
    """Host network links with our veth names (rkjvN, rkjpN)."""
    out = sh("ip", "-o", "link", check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(": ")
        if len(parts) > 1:
            name = parts[1].split("@")[0]
            if name.startswith(("rkjv", "rkjp")):
                names.append(name)
    return names


def _forward_rule(op, check=True):
    # Docker sets FORWARD's policy to DROP and br_netfilter sends bridged frames through it:
    # let our bridge talk to itself.
    rule = ["-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment", FORWARD_COMMENT,
            "-j", "ACCEPT"]
    if op == "-D":
        for _ in range(5):
            if sh("iptables", "-D", "FORWARD", *rule, check=False).returncode != 0:
                break
        return
    sh("iptables", "-I", "FORWARD", "1", *rule, check=check)


class Node:
    def __init__(self, cluster, i):
        self.i = i
        self.ip = "%s.%d" % (SUBNET, i)
        self.ns = ns_name(i)
        self.api = "%s:%d" % (self.ip, API_PORT)
        self.raft = "%s:%d" % (self.ip, RAFT_PORT)
        self.proxy_addr = "%s.254:%d" % (SUBNET, PROXY_BASE + i)
        self.region = cluster.regions.get(i, REGION)
        self.dir = os.path.join(cluster.dir, "n%d" % i)
        # With lazyfs, the node's disk (its data directory) is the lazyfs mount. The unseal key
        # is one file for the whole cluster (every node must unseal the same root key), provisioned
        # by the operator, as it is here: outside the disks.
        self.disk = os.path.join(self.dir, "disk") if cluster.lazyfs else self.dir
        self.data = os.path.join(self.disk, "data")
        self.unseal = os.path.join(cluster.dir, "unseal.key")
        self.lazyfs_ctl = os.path.join(self.dir, "lazyfs.sock")
        self.lazyfs_proc = None
        self.config = os.path.join(self.dir, "node.toml")
        self.log = os.path.join(cluster.run_dir, "node%d.log" % i)
        self.faketime_file = os.path.join(self.dir, "faketime")
        self.proc = None
        self.paused = False
        self.skew = 0
        self.fiu = None  # libfiu spec for the next start
        # A clock rate for the next start (libfaketime `+0 xRATE` on the wall *and* monotonic
        # clocks: the node's timers, leases and timeouts all run at that rate), or None.
        self.clock_rate = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, run_dir, work_dir, n, binary, *, plant=None, plant_nodes=None,
                 faketime=False, fiu=False, proxy=False, lazyfs=False, timing=None, regions=None,
                 log=print):
        self.run_dir = run_dir
        self.dir = work_dir
        self.n = n
        self.binary = binary
        self.plant = plant
        self.plant_nodes = plant_nodes
        self.faketime = faketime
        self.fiu = fiu  # some node may be started under libfiu (checked before boot)
        self.use_proxy = proxy
        self.lazyfs = lazyfs  # every node's disk forgets unsynced writes on a power cut
        self.timing = timing or {}
        # Node id -> region (default: every node in REGION), for layouts across regions.
        self.regions = dict(regions or {})
        # How often each node checkpoints its audit chain head through Raft (a write).
        self.audit_checkpoint_s = 2
        # More lines at the end of every node's config (a table of their own).
        self.extra_toml = []
        self.log = log
        self.nodes = {i: Node(self, i) for i in range(1, n + 1)}
        self.cluster_id = "rkj-%s" % secrets.token_hex(4)
        self.tls_dir = os.path.join(self.dir, "tls")
        self.ca_file = os.path.join(self.tls_dir, "ca.pem")
        self.api_tls = None  # client contexts (rkj/client.py), made with the certificates
        self.admin_tls = None
        self.secret_id = None
        self.uin = None
        self.secret_key = None
        self.proxies = {}
        self.lock = threading.RLock()
        self.partitioned = False
        self.removed = set()

    # ------------------------------------------------------------------ network

    def setup_network(self):
        cleanup_leftovers()
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", "%s.254/24" % SUBNET, "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        _forward_rule("-I")
        for node in self.nodes.values():
            host_if, ns_if = "rkjv%d" % node.i, "rkjp%d" % node.i
            sh("ip", "netns", "add", node.ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            sh("ip", "link", "set", ns_if, "netns", node.ns)
            sh("ip", "link", "set", host_if, "master", BRIDGE)
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "-n", node.ns, "link", "set", ns_if, "name", "eth0")
            sh("ip", "-n", node.ns, "addr", "add", "%s/24" % node.ip, "dev", "eth0")
            sh("ip", "-n", node.ns, "link", "set", "eth0", "up")
            sh("ip", "-n", node.ns, "link", "set", "lo", "up")
        if self.use_proxy:
            # A listener of an earlier proxy may linger a moment: try the next block of ports.
            for base in range(PROXY_BASE, PROXY_BASE + 100, 10):
                try:
                    for node in self.nodes.values():
                        p = proxy_mod.DelayProxy(("%s.254" % SUBNET, base + node.i),
                                                 (node.ip, RAFT_PORT))
                        p.start()
                        self.proxies[node.i] = p
                    break
                except OSError:
                    for p in self.proxies.values():
                        p.stop()
                    self.proxies = {}
            else:
                raise RuntimeError("no free block of proxy ports in %d-%d" % (
                    PROXY_BASE, PROXY_BASE + 99))
            for node in self.nodes.values():
                node.proxy_addr = "%s:%d" % self.proxies[node.i].listen

    def set_latency(self, ms, jitter_ms=0, nodes=None):
        """Delays the Raft traffic of ``nodes`` (every node's by default; the others' delay is
        set to 0) by ``ms`` plus up to ``jitter_ms``."""
        for i, p in self.proxies.items():
            on = nodes is None or i in nodes
            p.set_delay(ms / 1000.0 if on else 0.0, jitter_ms / 1000.0 if on else 0.0)

    def set_region_latency(self, one_way_ms):
        """Delays Raft traffic between nodes of different regions: ``one_way_ms`` maps a pair of
        regions (either order) to the delay each way, in ms; nodes of one region, and pairs not
        in the map, get none. Each proxy tells its peers apart by their namespace address."""
        def between(a, b):
            return one_way_ms.get((a, b), one_way_ms.get((b, a), 0)) if a != b else 0
        for i, p in self.proxies.items():
            dest = self.nodes[i]
            p.set_source_delays({n.ip: between(n.region, dest.region) / 1000.0
                                 for n in self.nodes.values() if n.i != i})

    def partition(self, groups):
        """Cuts the cluster into ``groups`` (lists of node ids): each node drops every packet from
        and to nodes outside its group (the host side, where the clients live, stays reachable)."""
        with self.lock:
            self.heal_partition()
            group_of = {i: gi for gi, g in enumerate(groups) for i in g}
            for node in self.nodes.values():
                for other in self.nodes.values():
                    if other.i == node.i or group_of.get(other.i) == group_of.get(node.i):
                        continue
                    sh("ip", "netns", "exec", node.ns, "iptables", "-A", "INPUT", "-s", other.ip,
                       "-j", "DROP")
                    sh("ip", "netns", "exec", node.ns, "iptables", "-A", "OUTPUT", "-d",
                       other.ip, "-j", "DROP")
            self.partitioned = True

    def cut_pairs(self, pairs):
        """Drops traffic between each pair only (a bridge: the others still see both ends)."""
        with self.lock:
            for a, b in pairs:
                for x, y in ((a, b), (b, a)):
                    nx, ny = self.nodes[x], self.nodes[y]
                    sh("ip", "netns", "exec", nx.ns, "iptables", "-A", "INPUT", "-s", ny.ip,
                       "-j", "DROP")
                    sh("ip", "netns", "exec", nx.ns, "iptables", "-A", "OUTPUT", "-d", ny.ip,
                       "-j", "DROP")
            self.partitioned = True

    def remove_node(self, i):
        """Removes node i from the membership (on the leader, found through the other members),
        then stops it and wipes its data directory."""
        others = [j for j in self.nodes if j != i and j not in self.removed]
        try:
            self.membership_change(others, "/admin/remove", {"id": i}, 60)
        except AdminError as e:
            raise FaultNotApplied("remove %d refused by every member: %s" % (i, e)) from None
        self.removed.add(i)
        self.kill(i)
        node = self.nodes[i]
        # Its audit trail goes with the data directory: keep it for the audit checker first.
        audit_mod.archive(self, i)
        shutil.rmtree(node.data, ignore_errors=True)

    def rejoin_node(self, i):
        """Starts node i empty and joins it (learner first, then voter)."""
        node = self.nodes[i]
        self.write_config(node, with_peers=False)
        self.start(i)
        try:
            self.wait_answering(i, time.time() + 30)
        except RuntimeError as e:
            raise FaultNotApplied("node %d did not come back empty: %s" % (i, e)) from None
        others = [j for j in self.nodes if j != i and j not in self.removed]
        body = {"id": i, "raft_addr": node.proxy_addr if self.use_proxy else node.raft,
                "api_addr": node.api, "region": node.region, "voter": True}
        last = None
        for _ in range(3):
            try:
                self.membership_change(others, "/admin/join", body, 90)
                self.removed.discard(i)
                return
            except AdminError as e:
                last = e
            time.sleep(1)
        raise FaultNotApplied("join %d refused: %s" % (i, last))

    def node_at(self, raft_addr):
        """The node whose Raft address (or proxy address, the advertised one) is ``raft_addr``."""
        for j, node in self.nodes.items():
            if raft_addr in (node.raft, node.proxy_addr):
                return j
        return None

    def membership_change(self, members, path, body, timeout):
        """POSTs a membership change to the leader. A member that does not lead answers 421
        with the leader's address (nodes do not pass admin calls on: a node certificate does not
        make a node an admin), so each member is asked in turn, and a named leader is asked next.
        Raises the last AdminError if none accepted it."""
        last = None
        for j in members:
            target = j
            for _ in range(2):  # the member, then the leader it names
                try:
                    return self.admin(target, timeout).request("POST", path, body,
                                                               timeout=timeout)
                except AdminError as e:
                    last = e
                    hinted = self.node_at(e.leader) if e.status == 421 and e.leader else None
                    if hinted is None or hinted == target:
                        break
                    target = hinted
        raise last

    def heal_partition(self):
        with self.lock:
            for node in self.nodes.values():
                sh("ip", "netns", "exec", node.ns, "iptables", "-F", check=False)
            self.partitioned = False

    # ------------------------------------------------------------------ processes

    def write_config(self, node, with_peers=True):
        os.makedirs(node.dir, exist_ok=True)
        t = {"heartbeat-ms": 100, "election-min-ms": 400, "election-max-ms": 700,
             "write-timeout-ms": 4000, "read-timeout-ms": 2000, "rpc-timeout-ms": 800}
        t.update(self.timing)
        advertise = node.proxy_addr if self.use_proxy else node.raft
        lines = [
            "node-id = %d" % node.i,
            'cluster-id = "%s"' % self.cluster_id,
            'region = "%s"' % node.region,
            'data-dir = "%s"' % node.data,
            'api-listen = "%s"' % node.api,
            'raft-listen = "%s"' % node.raft,
            'raft-advertise = "%s"' % advertise,
            "",
            # TLS on the API, mutual TLS between nodes and for the harness's admin calls: the
            # suite tests the transport a deployment runs, not a plaintext special case.
            "[tls]",
            'cert-file = "%s"' % self.node_cert(node.i)[0],
            'key-file = "%s"' % self.node_cert(node.i)[1],
            'ca-file = "%s"' % self.ca_file,
            "",
            "[timing]",
        ] + ["%s = %d" % kv for kv in t.items()] + [
            "",
            "[snapshot]",
            # Small, so snapshots are built, purged behind and sent to rejoining nodes in a run.
            "logs-since-last = 500",
            "max-logs-to-keep = 100",
            "",
            "[kms]",
            "cmk-limit = 100000",
            "manual-rotation-interval-secs = 0",
            "scheduler-interval-ms = 500",
            'unseal-key-file = "%s"' % node.unseal,
            "",
            # The audit trail in <data-dir>/audit (the default); its chain head checkpointed
            # through Raft every 2 s instead of 30, so a run's trails have checkpoints to be
            # verified against (rkj/audit.py).
            "[audit]",
            "checkpoint-interval-s = %d" % self.audit_checkpoint_s,
        ] + ([""] + self.extra_toml if self.extra_toml else [])
        if with_peers:
            for other in self.nodes.values():
                lines += ["", "[[peers]]", "id = %d" % other.i,
                          'raft-addr = "%s"' % (other.proxy_addr if self.use_proxy else other.raft),
                          'api-addr = "%s"' % other.api, 'region = "%s"' % other.region,
                          "voter = true"]
        # No secret is in it any more, but a node config is an operator's file: private, and
        # never readable even for the moment between create and chmod.
        fd = os.open(node.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(node.config, 0o600)
        if self.faketime and not os.path.exists(node.faketime_file):
            self.write_skew(node, 0)

    # ------------------------------------------------------------------ certificates

    def node_cert(self, i):
        """(certificate, key) files of node i."""
        return (os.path.join(self.tls_dir, "node%d.pem" % i),
                os.path.join(self.tls_dir, "node%d.key" % i))

    def admin_cert(self):
        return (os.path.join(self.tls_dir, "admin-%s.pem" % ADMIN_NAME),
                os.path.join(self.tls_dir, "admin-%s.key" % ADMIN_NAME))

    def node_hosts(self, node):
        """Every address the harness and the peers reach node's listeners by, for its
        certificate's SANs: its namespace IP (API and internal listener), and with latency
        proxies the proxies' host, the node's advertised Raft address. raftkms peers check the
        node id in the certificate, not the address, so they do not need the proxy there; the
        harness's Python clients check the address (rkj/client.py), and would if they dialled a
        proxy."""
        hosts = [node.ip]
        if self.use_proxy:
            hosts.append(node.proxy_addr.rsplit(":", 1)[0])
        return hosts

    def cert_commands(self):
        """The `raftkms cert` command lines of a run: the CA, one certificate per node, the
        harness's admin certificate."""
        common = ["--dir", self.tls_dir, "--cluster-id", self.cluster_id]
        cmds = [[self.binary, "cert", "ca"] + common]
        for node in self.nodes.values():
            cmd = [self.binary, "cert", "node"] + common + ["--id", str(node.i)]
            for h in self.node_hosts(node):
                cmd += ["--host", h]
            cmds.append(cmd)
        cmds.append([self.binary, "cert", "admin"] + common + ["--name", ADMIN_NAME])
        return cmds

    def make_certs(self):
        """Makes the run's CA and certificates with the binary under test (after the network,
        so the proxy addresses are known), and the client contexts of the harness. Under
        libfaketime (runs that move clocks) they are issued CERT_BACKDATE in the past."""
        os.makedirs(self.tls_dir, mode=0o700, exist_ok=True)
        os.chmod(self.tls_dir, 0o700)
        env = dict(os.environ)
        if self.faketime:
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=CERT_BACKDATE,
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
        for cmd in self.cert_commands():
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise HarnessError("%s: %s" % (" ".join(cmd[1:4]), e)) from None
            if p.returncode != 0:
                raise HarnessError("`%s` failed (%d): %s" % (
                    " ".join(cmd), p.returncode, (p.stderr or p.stdout).strip()))
        self.api_tls = tls_context(self.ca_file)
        self.admin_tls = tls_context(self.ca_file, *self.admin_cert())

    # ------------------------------------------------------------------ the disk (lazyfs)

    def mount_disk(self, node, timeout=15.0):
        """Starts node's lazyfs and waits until it is mounted and answers on its socket."""
        for d in ("backing", "shadow", "disk"):
            os.makedirs(os.path.join(node.dir, d), exist_ok=True)
        logf = open(os.path.join(self.run_dir, "lazyfs%d.log" % node.i), "a", encoding="utf-8")
        node.lazyfs_proc = subprocess.Popen(
            [LAZYFS_PYTHON, "-m", "rkj.lazyfs", os.path.join(node.dir, "backing"),
             os.path.join(node.dir, "shadow"), node.disk, node.lazyfs_ctl],
            cwd=JEPSEN_DIR, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True)
        logf.close()
        deadline = time.time() + timeout
        while True:
            if node.lazyfs_proc.poll() is not None:
                raise HarnessError("lazyfs of node %d exited (%s); see lazyfs%d.log" % (
                    node.i, node.lazyfs_proc.returncode, node.i))
            if node.disk in lazyfs_mounts():
                try:
                    if lazyfs_mod.control(node.lazyfs_ctl, "status", timeout=2).get("ok"):
                        return
                except OSError:
                    pass
            if time.time() > deadline:
                raise HarnessError("lazyfs of node %d not mounted at %s within %.0f s" % (
                    node.i, node.disk, timeout))
            time.sleep(0.05)

    def disk_control(self, i, op):
        """One request to node i's lazyfs; a harness error if it does not answer or refuses."""
        try:
            ans = lazyfs_mod.control(self.nodes[i].lazyfs_ctl, op)
        except OSError as e:
            raise HarnessError("lazyfs of node %d did not answer %s: %s" % (i, op, e)) from None
        if not ans.get("ok"):
            raise HarnessError("lazyfs of node %d refused %s: %s" % (i, op, ans.get("error")))
        return ans

    def disk_status(self, i):
        return self.disk_control(i, "status")

    def power_cut(self, i):
        """Power loss of node i: kill -9, then its disk drops what was not fsynced. Returns
        lazyfs's account of what it dropped."""
        if not self.lazyfs:
            raise HarnessError("power cut asked for, but the cluster runs without lazyfs")
        before = self.disk_status(i)
        self.kill(i)
        self.verify_gone(i)
        ans = self.disk_control(i, "cut")
        ans["generation_before"] = before.get("generation", 0)
        return ans

    def verify_power_cut(self, i, ans):
        """The cut happened on a disk the node wrote through: the node is gone, lazyfs's
        generation moved on by one, the node had written through it since the previous cut, and
        nothing is left unsynced (the page cache is the durable state now)."""
        self.verify_gone(i)
        if self.nodes[i].disk not in lazyfs_mounts():
            raise FaultNotApplied("node %d's disk %s is not a lazyfs mount" % (
                i, self.nodes[i].disk))
        if ans.get("generation") != ans.get("generation_before", -2) + 1:
            raise FaultNotApplied("lazyfs of node %d did not cut (generation %s -> %s)" % (
                i, ans.get("generation_before"), ans.get("generation")))
        if not ans.get("writes_since_last_cut"):
            raise FaultNotApplied("node %d wrote nothing through lazyfs since the last cut: the "
                                  "cut could not have dropped anything of it" % i)
        st = self.disk_status(i)
        if st.get("unsynced_bytes") or st.get("unsynced_entries"):
            raise FaultNotApplied("lazyfs of node %d still holds unsynced data after the cut: %r"
                                  % (i, st))

    def unmount_disks(self):
        for node in self.nodes.values():
            if node.lazyfs_proc is None:
                continue
            sh("fusermount3", "-u", "-z", node.disk, check=False)
            try:
                node.lazyfs_proc.terminate()
                node.lazyfs_proc.wait(timeout=5)
            except Exception:  # best effort: the mount is gone already
                node.lazyfs_proc.kill()
                try:
                    node.lazyfs_proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            node.lazyfs_proc = None

    def write_skew(self, node, seconds):
        node.skew = seconds
        tmp = node.faketime_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("%+d\n" % int(seconds))
        os.replace(tmp, node.faketime_file)

    def start(self, i):
        node = self.nodes[i]
        with self.lock:
            if node.alive():
                return
            cmd = ["ip", "netns", "exec", node.ns]
            if node.fiu:
                cmd += ["fiu-run", "-x", "-c", node.fiu]
                if self.faketime:
                    # fiu-run replaces LD_PRELOAD with its own libraries: add libfaketime back.
                    cmd += ["env", "LD_PRELOAD=" + " ".join(FIU_LIBS + [FAKETIME_LIB])]
            cmd += [self.binary, "serve", "--config", node.config]
            env = dict(os.environ)
            env["RUST_LOG"] = "info,openraft=warn"
            env.pop("RAFTKMS_PLANT", None)
            if self.plant and (self.plant_nodes is None or i in self.plant_nodes):
                env["RAFTKMS_PLANT"] = self.plant
            if self.faketime and node.clock_rate is not None:
                # Every clock of the node at a rate: its wall clock and its monotonic clock
                # (Instant, tokio's timers, the leases) run `rate` times as fast as real time.
                pre = env.get("LD_PRELOAD", "")
                env["LD_PRELOAD"] = (FAKETIME_LIB + " " + pre).strip()
                env["FAKETIME"] = "+0 x%s" % node.clock_rate
                env["FAKETIME_DONT_FAKE_MONOTONIC"] = "0"
                env.pop("FAKETIME_TIMESTAMP_FILE", None)
            elif self.faketime:
                # Wall clock only: timers and Raft timeouts keep the real monotonic clock.
                pre = env.get("LD_PRELOAD", "")
                env["LD_PRELOAD"] = (FAKETIME_LIB + " " + pre).strip()
                env["FAKETIME_TIMESTAMP_FILE"] = node.faketime_file
                env["FAKETIME_CACHE_DURATION"] = "1"
                env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
            logf = open(node.log, "a", encoding="utf-8")
            logf.write("\n=== %s start %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd)))
            logf.flush()
            node.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
            logf.close()
            node.paused = False
            self.verify_preloads(node)

    def required_preloads(self, node):
        libs = [FAKETIME_LIB] if self.faketime else []
        return libs + (FIU_LIBS if node.fiu else [])

    PRELOAD_GRACE_S = 1.0  # how long the binary may run before its preloads must be mapped

    @staticmethod
    def read_proc(pid):
        """(exe, maps, environ entries) of a process; empty if it cannot be read."""
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
            with open("/proc/%d/maps" % pid, encoding="utf-8", errors="replace") as f:
                maps = f.read()
            with open("/proc/%d/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
            return exe, maps, environ
        except OSError:
            return "", "", []

    def verify_preloads(self, node, timeout=10.0):
        """A node that must run under libfaketime or libfiu does: once the process has become the
        raftkms binary (after `ip netns exec` and `fiu-run` exec into it), /proc/<pid>/maps lists
        every required library. The dynamic loader maps LD_PRELOAD libraries before main, and
        silently goes on without one it cannot load; so a node without them is never kept."""
        libs = self.required_preloads(node)
        if not libs:
            return
        pid = node.proc.pid
        binary = os.path.realpath(self.binary)
        deadline = time.time() + timeout
        exe_since = None
        while True:
            if node.proc.poll() is not None:
                raise NodeExited("node %d exited (status %s) before its libraries (%s) could be "
                                 "checked; see %s" % (node.i, node.proc.returncode,
                                                      ", ".join(libs), node.log))
            exe, maps, environ = self.read_proc(pid)
            if exe == binary or exe.startswith(binary + " "):  # " (deleted)" if rebuilt
                missing = [lib for lib in libs if os.path.basename(lib) not in maps]
                if node.fiu:
                    # fiu_run_preload.so enables the failpoints named in FIU_ENABLE at load.
                    enable = [e for e in environ if e.startswith(b"FIU_ENABLE=")]
                    name = node.fiu.split("name=", 1)[-1].split(",", 1)[0].encode()
                    if not any(name in e for e in enable):
                        missing.append("FIU_ENABLE=%s" % name.decode())
                if not missing:
                    return
                exe_since = exe_since or time.time()
                if time.time() - exe_since > self.PRELOAD_GRACE_S:
                    self.kill(node.i)
                    raise FaultNotApplied("node %d runs without %s (/proc/%d maps, environ)" % (
                        node.i, ", ".join(missing), pid))
            if time.time() > deadline:
                self.kill(node.i)
                raise HarnessError("node %d (pid %d) did not become %s within %.0f s (exe %r)"
                                   % (node.i, pid, binary, timeout, exe))
            time.sleep(0.003)

    # ------------------------------------------------------------------ checks of faults

    def verify_gone(self, i):
        """After kill: the process has exited and nothing runs in the node's namespace."""
        node = self.nodes[i]
        if node.alive():
            raise FaultNotApplied("node %d (pid %d) still runs after kill -9" % (i, node.proc.pid))
        pids = sh("ip", "netns", "pids", node.ns).stdout.split()
        if pids:
            raise FaultNotApplied("node %d: processes still in %s after kill -9: %s" % (
                i, node.ns, " ".join(pids)))

    def verify_stopped(self, i, stopped=True, timeout=3.0):
        """After SIGSTOP (or SIGCONT): /proc/<pid>/stat says T (or not)."""
        node = self.nodes[i]
        if not node.alive():
            raise FaultNotApplied("node %d is not running: it cannot be %s" % (
                i, "paused" if stopped else "resumed"))
        deadline = time.time() + timeout
        while True:
            st = proc_state(node.proc.pid)
            if (st == "T") == stopped and st is not None:
                return
            if time.time() > deadline:
                raise FaultNotApplied("node %d (pid %d) is in state %s after SIG%s" % (
                    i, node.proc.pid, st, "STOP" if stopped else "CONT"))
            time.sleep(0.02)

    def drop_rules(self, i):
        """The DROP rules in node i's namespace: {("INPUT", ip), ("OUTPUT", ip)}."""
        out = sh("ip", "netns", "exec", self.nodes[i].ns, "iptables", "-S").stdout
        rules = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 6 and f[0] == "-A" and f[-2:] == ["-j", "DROP"] and \
                    f[2] in ("-s", "-d"):
                rules.add((f[1], f[3].split("/")[0]))
        return rules

    def verify_cut(self, pairs):
        """Every (a, b) in ``pairs``: a drops what comes from b and what goes to b."""
        missing = []
        for a in sorted({a for a, _ in pairs}):
            have = self.drop_rules(a)
            for x, b in pairs:
                if x != a:
                    continue
                ip = self.nodes[b].ip
                missing += ["n%d %s %s" % (a, chain, ip) for chain in ("INPUT", "OUTPUT")
                            if (chain, ip) not in have]
        if missing:
            raise FaultNotApplied("iptables DROP rules missing: %s" % ", ".join(missing))

    def verify_healed(self):
        left = {i: sorted(self.drop_rules(i)) for i in self.nodes}
        left = {i: r for i, r in left.items() if r}
        if left:
            raise FaultNotApplied("DROP rules left after healing: %r" % left)

    def clock_probe(self, i, signed_at):
        """Whether node i accepts a request signed at wall time ``signed_at()`` (TC3: within 300 s
        of the node's own clock, checked before anything else): True, False (the node answered
        AuthFailure.SignatureExpire), None (no answer)."""
        if self.secret_id is None:
            raise HarnessError("no credential yet: the clock of node %d cannot be read" % i)
        node = self.nodes[i]
        c = KmsClient(node.api, node.region, self.secret_id, self.secret_key, self.api_tls,
                      timeout=2.0, clock=signed_at)
        r = c.call("DescribeKey", {"KeyId": "rkj-clock-probe"}, write=False, stale=True)
        if r.code == "AuthFailure.SignatureExpire":
            return False
        if r.code and (r.code.startswith("transport") or r.code.startswith("http.")):
            return None
        return True

    def verify_clock(self, i, skew, margin=10, timeout=8.0):
        """Node i's wall clock is within ``margin`` s of harness time + ``skew``: it accepts
        requests signed at (harness time + skew) -/+ (300 - margin). The nodes' own clocks answer
        (libfaketime re-reads the file every second); the Date header cannot, as hyper caches it
        until the clock passes the next second, which after a step back is minutes away."""
        w = 300 - margin
        deadline = time.time() + timeout
        seen = None
        while True:
            lo = self.clock_probe(i, lambda: time.time() + skew - w)
            hi = self.clock_probe(i, lambda: time.time() + skew + w)
            if lo and hi:
                return
            if lo is not None and hi is not None:
                seen = (lo, hi)
            if time.time() > deadline:
                break
            time.sleep(0.3)
        if seen is None:
            raise HarnessError("node %d did not answer the clock probes for %.0f s" % (i, timeout))
        raise FaultNotApplied(
            "node %d's clock is not at harness time %+d s (+-%d s): it %s a request signed at "
            "%+d s and %s one at %+d s" % (i, skew, margin, "accepts" if seen[0] else "refuses",
                                           skew - w, "accepts" if seen[1] else "refuses",
                                           skew + w))

    def node_date(self, i):
        """The node's wall clock as its HTTP `Date` header says (1 s resolution), in seconds."""
        import email.utils
        from .client import _connection
        conn = _connection(self.nodes[i].api, self.api_tls, 3.0)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
            date = resp.getheader("date")
        finally:
            conn.close()
        if not date:
            raise HarnessError("node %d answered without a Date header" % i)
        return email.utils.parsedate_to_datetime(date).timestamp()

    def verify_clock_rate(self, i, rate, span=4.0):
        """Node i's clock runs at ``rate``: over ``span`` real seconds its `Date` moved by
        rate x span, within the header's 1 s resolution (each end +-1 s). Checks that the rate
        differs visibly from 1 first (the nemesis picks such rates)."""
        a = self.node_date(i)
        t0 = time.time()
        time.sleep(span)
        b = self.node_date(i)
        real = time.time() - t0
        moved = b - a
        if abs(moved - rate * real) > 2.0 or abs(moved - real) <= 1.0:
            raise FaultNotApplied("node %d's clock moved %.0f s in %.1f real seconds, not at "
                                  "rate %s" % (i, moved, real, rate))
        return moved / real

    def verify_latency(self, timeout=5.0, nodes=None):
        """The proxies are in the Raft path: since the delay was set, all of them but at most one
        (the leader's, which peers may not dial in a few seconds) forwarded traffic under it;
        with ``nodes`` (a follower's latency alone), every one of theirs did."""
        if not self.proxies:
            raise HarnessError("latency asked for, but the cluster has no proxies")
        chosen = {i: p for i, p in self.proxies.items() if nodes is None or i in nodes}
        need = len(chosen) if nodes is not None else max(1, len(chosen) - 1)
        deadline = time.time() + timeout
        while True:
            carried = {i: p.sent_since_set() for i, p in chosen.items()}
            if sum(1 for v in carried.values() if v > 0) >= need:
                return
            if time.time() > deadline:
                raise FaultNotApplied("latency proxies carried no Raft traffic under the new delay "
                                      "(chunks per node: %r)" % carried)
            time.sleep(0.05)

    def leader_status(self):
        for j in self.nodes:
            if j in self.removed:
                continue
            st = self.status(j)
            if st and st.get("state") == "Leader":
                return st
        return None

    def verify_membership(self, i, voter, timeout=20.0):
        """The leader's membership has node i as a voter (``voter`` True) or not at all
        (False)."""
        deadline = time.time() + timeout
        last = None
        while True:
            st = self.leader_status()
            if st is not None:
                voters = set(st.get("voters") or [])
                members = voters | set(st.get("learners") or [])
                last = {"voters": sorted(voters), "learners": st.get("learners")}
                if (voter and i in voters) or (not voter and i not in members):
                    return
            if time.time() > deadline:
                raise FaultNotApplied("node %d is %sa voter in the leader's membership %r" % (
                    i, "not " if voter else "still ", last))
            time.sleep(0.3)

    # ------------------------------------------------------------------ root key

    def _admin_retrying(self, i, method, path, body=None, timeout=20.0):
        """An admin call to node i, retried on transport errors and 5xx answers (a node that
        has just restarted, a leader change) until ``timeout``."""
        deadline = time.time() + timeout
        while True:
            try:
                return self.admin(i, timeout=10.0).request(method, path, body)
            except AdminError as e:
                if (e.status is not None and e.status < 500) or time.time() > deadline:
                    raise
            time.sleep(0.3)

    def root_key_status(self, i):
        return self._admin_retrying(i, "GET", "/admin/root-key")

    def rotate_root_key(self, i):
        """Installs the next root-key version through node i; returns it. The call names the
        version it installs, so a retry after a lost answer does not rotate twice."""
        target = self.root_key_status(i)["current"] + 1
        self._admin_retrying(i, "POST", "/admin/root-key/rotate", {"version": target})
        return target

    def verify_rewrapped(self, i, version, timeout=60.0):
        """Every stored value is under root version ``version`` (the leader's re-wrap is done)."""
        deadline = time.time() + timeout
        while True:
            st = self.root_key_status(i)
            if st["current"] == version and st["pending"] == 0:
                return st
            if time.time() > deadline:
                raise FaultNotApplied("the re-wrap to root version %d did not finish: %r" % (version, st))
            time.sleep(0.3)

    def retire_root_keys(self, i, timeout=30.0):
        """Retires every root version but the current one; checks that only it is left. A
        version already gone (a retried call that had taken effect) is done; one a late write
        still uses is retried until the next re-wrap pass has moved it."""
        deadline = time.time() + timeout
        while True:
            st = self.root_key_status(i)
            old = [v["version"] for v in st["versions"] if v["version"] != st["current"]]
            if not old:
                return
            for v in old:
                try:
                    self._admin_retrying(i, "POST", "/admin/root-key/retire", {"version": v})
                except AdminError as e:
                    if e.status is None or e.status >= 500:
                        raise
                    # 4xx: retired meanwhile, or still in use; the status says which.
            if time.time() > deadline:
                raise FaultNotApplied("older root versions are still installed: %r" % st)
            time.sleep(0.3)

    def signal(self, i, sig):
        node = self.nodes[i]
        if node.alive():
            try:
                os.kill(node.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self, i):
        node = self.nodes[i]
        with self.lock:
            if node.alive():
                if node.paused:
                    self.signal(i, signal.SIGCONT)
                node.proc.kill()
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            node.paused = False

    def pause(self, i):
        with self.lock:
            self.signal(i, signal.SIGSTOP)
            self.nodes[i].paused = True

    def resume(self, i):
        with self.lock:
            self.signal(i, signal.SIGCONT)
            self.nodes[i].paused = False

    # ------------------------------------------------------------------ admin

    def admin(self, i, timeout=3.0):
        if self.admin_tls is None:
            raise AdminError("no admin certificate yet (make_certs runs at boot)")
        return AdminClient(self.nodes[i].raft, self.cluster_id, self.admin_tls, timeout=timeout)

    def status(self, i, timeout=1.5):
        try:
            return self.admin(i, timeout).status()
        except AdminError:
            return None

    def leader(self, timeout=1.5):
        """The leader most reachable nodes agree on, or None."""
        votes = {}
        for i, node in self.nodes.items():
            if not node.alive() or node.paused or i in self.removed:
                continue
            st = self.status(i, timeout)
            if st and st.get("leader") is not None and st.get("state") == "Leader":
                return st["leader"]
            if st and st.get("leader") is not None:
                votes[st["leader"]] = votes.get(st["leader"], 0) + 1
        if votes:
            return max(votes, key=votes.get)
        return None

    def wait_answering(self, i, deadline):
        while time.time() < deadline:
            if not self.nodes[i].alive():
                raise RuntimeError("node %d exited during start; see %s" % (i, self.nodes[i].log))
            if self.status(i) is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("node %d did not answer in time" % i)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ok = 0
            for i in self.nodes:
                if i in self.removed:
                    continue
                st = self.status(i)
                if st and st.get("ready") and st.get("leader") is not None:
                    ok += 1
            if ok == self.n - len(self.removed):
                return
            time.sleep(0.2)
        raise RuntimeError("cluster not ready within %ds" % timeout)

    def boot(self):
        """Network, configs, processes, init, and a credential for the clients."""
        check_tools(faketime=self.faketime, fiu=self.fiu, lazyfs=self.lazyfs)
        self.setup_network()
        self.make_certs()
        for node in self.nodes.values():
            self.write_config(node)
            if self.lazyfs:
                self.mount_disk(node)
        for i in self.nodes:
            self.start(i)
        deadline = time.time() + 60
        for i in self.nodes:
            self.wait_answering(i, deadline)
        self.admin(1, 30).request("POST", "/admin/init")
        self.wait_ready(60)
        admin = self.admin(self.leader() or 1, 30)
        acct = admin.request("POST", "/admin/accounts", {"name": "jepsen"})
        cred = admin.request("POST", "/admin/credentials", {"uin": acct["uin"]})
        self.secret_id, self.secret_key = cred["secret_id"], cred["secret_key"]
        self.uin = acct["uin"]

    def digests(self, timeout=2.0):
        out = {}
        for i in self.nodes:
            if i in self.removed:
                continue
            try:
                out[i] = self.admin(i, timeout).digest()
            except AdminError as e:
                out[i] = {"error": str(e)}
        return out

    def heal_all(self):
        """Ends every fault: network, pauses, latency, clocks; restarts dead nodes (without
        failpoints)."""
        with self.lock:
            self.heal_partition()
            self.set_latency(0)
            for i, node in self.nodes.items():
                if node.paused:
                    self.resume(i)
                if self.faketime and node.skew != 0:
                    self.write_skew(node, 0)
                if i in self.removed:
                    continue
                if node.fiu and node.alive():
                    self.kill(i)
                node.fiu = None
                if not node.alive():
                    try:
                        self.start(i)
                    except NodeExited as e:
                        # A node that dies at once on restart is the system's problem: the
                        # recovery check reports it (with its panic), so the heal goes on.
                        self.log("heal: %s" % e)

    def teardown(self):
        for i, node in self.nodes.items():
            try:
                if node.alive():
                    if node.paused:
                        os.kill(node.proc.pid, signal.SIGCONT)
                    node.proc.kill()
                    node.proc.wait(timeout=10)
            except Exception:  # best effort: cleanup below kills by namespace anyway
                pass
        for p in self.proxies.values():
            p.stop()
        self.unmount_disks()
        cleanup_leftovers()

    def describe(self):
        return {"nodes": self.n, "cluster_id": self.cluster_id, "binary": self.binary,
                "plant": self.plant, "plant_nodes": self.plant_nodes, "lazyfs": self.lazyfs,
                "tls": {"api": "tls", "internal": "mutual tls", "dir": self.tls_dir,
                        "node_hosts": {i: self.node_hosts(n) for i, n in self.nodes.items()}},
                "addresses": {i: {"api": n.api, "raft": n.raft} for i, n in self.nodes.items()}}


def dump_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=str)
