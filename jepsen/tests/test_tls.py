"""The cluster runs on TLS: the node configs the harness writes, the `raftkms cert` commands it
runs, and the clients' TLS (a TLS failure is a transport failure, classified as before; a
membership change sent to a follower names the leader).

Until this file the harness ran every node with `insecure-plaintext = true` and a cluster secret,
a mode a deployment does not run: the suite tested a transport nobody uses. raftkms now refuses a
config with [tls] and a secret, so a stray secret line would keep every node from starting.

The certificates of the client tests come from openssl (skipped without it), so these tests do
not need a raftkms build; the runs (jepsen/run) use `raftkms cert`.

Run: python3 -m unittest discover -s jepsen/tests
"""

import http.server
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import tomllib
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rkj import cluster as cluster_mod  # noqa: E402
from rkj.client import AdminClient, AdminError, KmsClient, tls_context  # noqa: E402
from rkj.cluster import Cluster, HarnessError  # noqa: E402

_TEMP_DIRS = []


def temp_dir():
    d = tempfile.mkdtemp(prefix="rkj-test-")
    _TEMP_DIRS.append(d)
    return d


def tearDownModule():
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def fake_cluster(binary="/bin/true", **kw):
    d = temp_dir()
    return Cluster(d, d, 3, binary, log=lambda m: None, **kw)


class ConfigTest(unittest.TestCase):
    def test_config_has_tls_and_no_secret(self):
        c = fake_cluster()
        node = c.nodes[2]
        c.write_config(node)
        with open(node.config, "rb") as f:
            cfg = tomllib.load(f)
        for key in ("cluster-secret", "admin-token", "insecure-plaintext"):
            self.assertNotIn(key, cfg)
        self.assertEqual(cfg["tls"], {"cert-file": os.path.join(c.tls_dir, "node2.pem"),
                                      "key-file": os.path.join(c.tls_dir, "node2.key"),
                                      "ca-file": os.path.join(c.tls_dir, "ca.pem")})
        self.assertEqual(cfg["cluster-id"], c.cluster_id)
        # The unseal key stays off the node's disk (the lazyfs mount in power runs).
        self.assertEqual(cfg["kms"]["unseal-key-file"], os.path.join(c.dir, "unseal.key"))
        self.assertEqual(stat.S_IMODE(os.stat(node.config).st_mode), 0o600)
        self.assertEqual([p["id"] for p in cfg["peers"]], [1, 2, 3])

    def test_rewritten_config_stays_private(self):
        c = fake_cluster()
        node = c.nodes[1]
        os.makedirs(node.dir, exist_ok=True)
        with open(node.config, "w", encoding="utf-8") as f:
            f.write("old\n")
        os.chmod(node.config, 0o644)
        c.write_config(node, with_peers=False)
        self.assertEqual(stat.S_IMODE(os.stat(node.config).st_mode), 0o600)
        with open(node.config, "rb") as f:
            self.assertNotIn("peers", tomllib.load(f))


class CertCommandsTest(unittest.TestCase):
    def hosts_of(self, cmd):
        return [cmd[k + 1] for k, a in enumerate(cmd) if a == "--host"]

    def test_every_node_names_the_addresses_it_is_dialled_by(self):
        c = fake_cluster()
        cmds = c.cert_commands()
        self.assertEqual([cmd[1:3] for cmd in cmds],
                         [["cert", "ca"]] + [["cert", "node"]] * 3 + [["cert", "admin"]])
        for cmd in cmds:
            self.assertIn(c.cluster_id, cmd)
            self.assertEqual(cmd[cmd.index("--dir") + 1], c.tls_dir)
        for i in (1, 2, 3):
            cmd = cmds[i]
            self.assertEqual(cmd[cmd.index("--id") + 1], str(i))
            self.assertEqual(self.hosts_of(cmd), [c.nodes[i].ip])
        self.assertEqual(cmds[4][cmds[4].index("--name") + 1], cluster_mod.ADMIN_NAME)

    def test_with_proxies_the_proxy_host_is_named_too(self):
        c = fake_cluster(proxy=True)
        for i in (1, 2, 3):
            self.assertEqual(self.hosts_of(c.cert_commands()[i]),
                             [c.nodes[i].ip, "%s.254" % cluster_mod.SUBNET])

    def fake_binary(self, body):
        d = temp_dir()
        path = os.path.join(d, "raftkms")
        with open(path, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o755)
        return path, d

    def test_a_failing_cert_command_is_a_harness_error(self):
        binary, _ = self.fake_binary("echo 'no such subcommand: cert' >&2\nexit 2\n")
        c = fake_cluster(binary=binary)
        with self.assertRaises(HarnessError) as cm:
            c.make_certs()
        self.assertIn("no such subcommand", str(cm.exception))

    @unittest.skipUnless(os.path.exists(cluster_mod.FAKETIME_LIB), "no libfaketime")
    def test_clock_runs_issue_backdated_certificates(self):
        """A node's clock set 10 days back must still accept its peers' certificates."""
        binary, d = self.fake_binary('echo "$FAKETIME" >> "%s/faketime"\nexit 3\n' % "$(dirname $0)")
        c = fake_cluster(binary=binary, faketime=True)
        with self.assertRaises(HarnessError):
            c.make_certs()
        with open(os.path.join(d, "faketime"), encoding="utf-8") as f:
            self.assertEqual(f.read().split(), [cluster_mod.CERT_BACKDATE])
        self.assertEqual(stat.S_IMODE(os.stat(c.tls_dir).st_mode), 0o700)


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=60)


def make_pki(d, name="ca"):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    ca, ca_key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=rkj test " + name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": ca}
    for leaf, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        key, csr = os.path.join(d, name + leaf + ".key"), os.path.join(d, name + leaf + ".csr")
        pem, extf = os.path.join(d, name + leaf + ".pem"), os.path.join(d, name + leaf + ".ext")
        with open(extf, "w", encoding="utf-8") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=rkj test " + leaf)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-out", pem, "-days", "2", "-extfile", extf)
        out[leaf] = (pem, key)
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers what the test puts in ``server.answer``; records the client certificate."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append({"peercert": self.connection.getpeercert(),
                                 "authorization": self.headers.get("Authorization")})
        status, doc = self.server.answer
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def serve(tls_ctx=None):
    """An HTTP(S) server on 127.0.0.1 in a thread; returns (server, "127.0.0.1:port")."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.seen = []
    srv.answer = (200, {"Response": {"RequestId": "r"}})
    if tls_ctx is not None:
        srv.socket = tls_ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, "127.0.0.1:%d" % srv.server_address[1]


@unittest.skipUnless(shutil.which("openssl"), "no openssl")
class ClientTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = temp_dir()
        cls.pki = make_pki(d)
        cls.other = make_pki(d, "other")

    def server_ctx(self, pki, mutual=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*pki["server"])
        if mutual:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=pki["ca"])
        return ctx

    def start(self, ctx):
        srv, addr = serve(ctx)
        self.addCleanup(srv.server_close)  # cleanups run last-in first-out: shutdown first
        self.addCleanup(srv.shutdown)
        return srv, addr

    def kms(self, addr, ctx):
        return KmsClient(addr, "ap-x", "AKID", "key", ctx, timeout=3.0)

    def test_kms_over_tls_trusting_the_cluster_ca(self):
        _, addr = self.start(self.server_ctx(self.pki))
        r = self.kms(addr, tls_context(self.pki["ca"])).call("DescribeKey", {}, write=False)
        self.assertEqual(r.kind, "ok")

    def test_a_tls_failure_is_a_transport_failure(self):
        # A server whose certificate is not from the cluster CA; then one speaking plain HTTP.
        for ctx in (self.server_ctx(self.other), None):
            _, addr = self.start(ctx)
            c = self.kms(addr, tls_context(self.pki["ca"]))
            read = c.call("DescribeKey", {}, write=False)
            write = c.call("CreateKey", {}, write=True)
            self.assertEqual((read.kind, read.code), ("fail", "transport"))
            self.assertEqual((write.kind, write.code), ("info", "transport"))

    def test_refused_connection_is_still_a_definite_failure(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        r = self.kms("127.0.0.1:%d" % port, tls_context(self.pki["ca"])).call(
            "CreateKey", {}, write=True)
        self.assertEqual((r.kind, r.code), ("fail", "transport.refused"))

    def test_admin_presents_its_certificate_and_no_token(self):
        srv, addr = self.start(self.server_ctx(self.pki, mutual=True))
        admin = AdminClient(addr, "rkj-x", tls_context(self.pki["ca"], *self.pki["client"]))
        srv.answer = (200, {"state": "Leader"})
        self.assertEqual(admin.status(), {"state": "Leader"})
        self.assertIsNotNone(srv.seen[-1]["peercert"])
        self.assertIsNone(srv.seen[-1]["authorization"])
        # Without a client certificate the listener refuses the handshake.
        with self.assertRaises(AdminError) as cm:
            AdminClient(addr, "rkj-x", tls_context(self.pki["ca"])).status()
        self.assertIsNone(cm.exception.status)

    def test_a_follower_names_the_leader(self):
        srv, addr = self.start(self.server_ctx(self.pki, mutual=True))
        admin = AdminClient(addr, "rkj-x", tls_context(self.pki["ca"], *self.pki["client"]))
        srv.answer = (421, {"error": "node 3 leads", "retryable": True,
                            "leader": "10.213.47.3:31091"})
        with self.assertRaises(AdminError) as cm:
            admin.request("POST", "/admin/remove", {"id": 2})
        self.assertEqual((cm.exception.status, cm.exception.leader), (421, "10.213.47.3:31091"))


class MembershipChangeTest(unittest.TestCase):
    def test_follows_the_leader_a_follower_names(self):
        c = fake_cluster(proxy=True)
        c.nodes[3].proxy_addr = "10.213.47.254:31303"
        asked = []

        class Fake:
            def __init__(self, i):
                self.i = i

            def request(self, method, path, body, timeout=None):
                asked.append(self.i)
                if self.i != 3:
                    raise AdminError("421", status=421, leader="10.213.47.254:31303")
                return {"ok": True}
        c.admin = lambda i, timeout=3.0: Fake(i)
        self.assertEqual(c.membership_change([1, 2], "/admin/remove", {"id": 2}, 5),
                         {"ok": True})
        self.assertEqual(asked, [1, 3])

    def test_raises_the_last_refusal(self):
        c = fake_cluster()

        class Fake:
            def request(self, *a, **k):
                raise AdminError("down")
        c.admin = lambda i, timeout=3.0: Fake()
        with self.assertRaises(AdminError):
            c.membership_change([1, 3], "/admin/join", {}, 5)


if __name__ == "__main__":
    unittest.main()
