#!/usr/bin/env python3
"""Groups a flat `perf report --no-children --sort symbol --stdio -g none` (stdin) by area:
kernel scheduling/network, allocation, HTTP stack, tokio, openraft, serialization, crypto, raftkms."""
import re, sys, collections
groups = [
 ("kernel: scheduler/context switch", r"^\[k\] (finish_task_switch|__schedule|schedule|_raw_spin|try_to_wake|pick_next|dequeue|enqueue|update_curr|__switch_to)"),
 ("kernel: network (loopback TCP)", r"^\[k\] .*(tcp|skb|sock|net|ip_|inet|nf_|conntrack|loopback|__dev_queue|epoll|ep_)"),
 ("kernel: other (syscalls, memory, futex)", r"^\[k\] "),
 ("malloc/free/memmove (allocation, copies)", r"(malloc|free|_int_|realloc|memmove|memcpy|memset|unlink_chunk|consolidate|cfree|alloc::raw_vec|RawVec|reserve|__memcmp)"),
 ("HTTP: hyper/axum/tower/http/reqwest", r"(hyper|axum|tower|http::|reqwest|h2::|httparse)"),
 ("tokio runtime/timers/sync", r"(tokio|mio::|parking_lot|futex|syscall$|clock_gettime|__vdso)"),
 ("openraft", r"openraft"),
 ("serialization: serde/json/bincode", r"(serde|json|bincode|ryu|itoa)"),
 ("crypto: sha2/hmac/aes/ghash/rand", r"(sha2|hmac|aes|ghash|polyval|gcm|chacha|rand|getrandom|crng)"),
 ("formatting/strings/tracing", r"(core::fmt|fmt::|String|str::|tracing|Extend<char>|uuid|hex::)"),
 ("rocksdb", r"(rocksdb|rocks)"),
 ("raftkms code", r"raftkms"),
]
tot = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\[[.k]\]\s+.*)$", line)
    if not m: continue
    pct, sym = float(m.group(1)), m.group(2).strip()
    for name, rx in groups:
        if re.search(rx, sym):
            tot[name] += pct; break
    else:
        tot["other/unresolved"] += pct
for k, v in tot.most_common():
    print(f"{v:6.1f}%  {k}")
