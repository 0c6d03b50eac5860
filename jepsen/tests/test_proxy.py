"""The latency proxy on real loopback sockets: the common delay, and a delay set per source
address (the latency between two regions) that applies to that source's connections only, in
both directions.

Run: python3 -m unittest discover -s jepsen/tests
"""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from rkj.proxy import DelayProxy  # noqa: E402


def echo_server():
    """An echo server on 127.0.0.1; returns its port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def one(c=c):
                while True:
                    data = c.recv(4096)
                    if not data:
                        c.close()
                        return
                    c.sendall(data)
            threading.Thread(target=one, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def round_trip(port, source="127.0.0.1"):
    """Seconds for one 5-byte echo through the proxy, dialled from ``source``."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        t = time.monotonic()
        c.sendall(b"hello")
        got = b""
        while len(got) < 5:
            chunk = c.recv(5)
            if not chunk:
                break
            got += chunk
        elapsed = time.monotonic() - t
        assert got == b"hello", got
        return elapsed
    finally:
        c.close()


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.srv = echo_server()
        self.proxy = DelayProxy(("127.0.0.1", 0), self.srv.getsockname())
        self.proxy.start()
        self.port = self.proxy.sock.getsockname()[1]

    def tearDown(self):
        self.proxy.stop()
        self.srv.close()

    def test_common_delay_each_way(self):
        self.proxy.set_delay(0.1)
        rtt = round_trip(self.port)
        self.assertGreaterEqual(rtt, 0.2)  # 100 ms out, 100 ms back
        self.assertGreater(self.proxy.sent_since_set(), 0)

    def test_source_delay_applies_to_its_source_only(self):
        # 127.0.0.2 is on loopback too: a second "region".
        self.proxy.set_source_delays({"127.0.0.2": 0.15})
        far = round_trip(self.port, "127.0.0.2")
        near = round_trip(self.port, "127.0.0.1")
        self.assertGreaterEqual(far, 0.3)  # both directions of the far source's connection
        self.assertLess(near, 0.1)

    def test_source_delay_overrides_common_delay(self):
        self.proxy.set_delay(0.2)
        self.proxy.set_source_delays({"127.0.0.1": 0.0})
        self.assertLess(round_trip(self.port, "127.0.0.1"), 0.1)
        self.assertGreaterEqual(round_trip(self.port, "127.0.0.3"), 0.4)


if __name__ == "__main__":
    unittest.main()
