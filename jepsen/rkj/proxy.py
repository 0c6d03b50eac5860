"""A small userspace TCP proxy that delays every chunk by a settable latency (plus jitter): the
kernel's netem is not available on these machines. One proxy sits in front of each node's
internal (Raft) listener; peers dial the proxy because it is the node's advertised address.
Order within a connection is preserved (a chunk is sent no earlier than its predecessor).
Peers dial from their own namespace's address, so a delay can also be set per source address
(``set_source_delays``: the latency between two regions), which then applies to both directions
of that peer's connections."""

import collections
import random
import socket
import threading
import time


class DelayProxy:
    def __init__(self, listen, target):
        self.listen = listen
        self.target = target
        self.delay = 0.0
        self.jitter = 0.0
        self.source_delays = {}  # peer IP -> delay in seconds, instead of `delay`
        self.generation = 0  # bumped by every set_delay
        self.sent_current = 0  # chunks forwarded under the current setting
        self.stopped = threading.Event()
        self.sock = None
        self.conns = []
        self.lock = threading.Lock()

    def set_delay(self, delay, jitter=0.0):
        """The delay of every connection (per-source delays set before are dropped)."""
        with self.lock:
            self.delay, self.jitter = delay, jitter
            self.source_delays = {}
            self.generation += 1
            self.sent_current = 0

    def set_source_delays(self, delays):
        """Delays chunks of connections from each source IP in ``delays`` (seconds) by that
        amount, in both directions, instead of the common delay."""
        with self.lock:
            self.source_delays = dict(delays)
            self.generation += 1
            self.sent_current = 0

    def _delay_for(self, source):
        """Under self.lock: the delay of one chunk of a connection from ``source``."""
        base = self.source_delays.get(source, self.delay)
        return base + (random.random() * self.jitter if self.jitter else 0)

    def sent_since_set(self):
        """Chunks forwarded (delayed by the current setting) since the last set_delay: proof
        that the proxy is in the path."""
        with self.lock:
            return self.sent_current

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(self.listen)
            self.sock.listen(64)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.5)
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def stop(self):
        self.stopped.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self):
        while not self.stopped.is_set():
            try:
                client, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns += [client, upstream]
            self._pipe(client, upstream, peer[0])
            self._pipe(upstream, client, peer[0])

    def _pipe(self, src, dst, source):
        queue = collections.deque()
        cond = threading.Condition()
        done = [False]

        def reader():
            while not self.stopped.is_set():
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                with self.lock:
                    gen = self.generation
                    delay = self._delay_for(source)
                with cond:
                    queue.append((time.monotonic() + delay, data, gen))
                    cond.notify()
                if not data:
                    return

        def writer():
            last = 0.0
            while True:
                with cond:
                    while not queue:
                        cond.wait(0.5)
                        if self.stopped.is_set():
                            return
                    due, data, gen = queue.popleft()
                due = max(due, last)
                last = due
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    try:
                        src.close()
                    except OSError:
                        pass
                    return
                with self.lock:
                    if gen == self.generation:
                        self.sent_current += 1

        threading.Thread(target=reader, daemon=True, name="proxy-r").start()
        threading.Thread(target=writer, daemon=True, name="proxy-w").start()
