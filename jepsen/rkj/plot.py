"""Latency over time as a hand-written SVG: one dot per completed op (log-scale latency), coloured
by outcome, with the nemesis's fault windows shaded and labelled."""

import math
from xml.sax.saxutils import escape

COLORS = {"ok": "#2a9d4b", "fail": "#d62828", "info": "#f4a100"}
FAULT_COLORS = {"kill": "#e63946", "kill-all": "#9d0208", "pause": "#6a4c93",
                "partition": "#1d70a2", "isolate": "#1d70a2", "clock": "#e9c46a",
                "clock-bump": "#f4a261", "fsync": "#8d6e63", "membership": "#2a9d8f",
                "latency": "#adb5bd"}


def render(path, ops, windows, title, t_end_ns):
    W, H = 1000, 420
    L, R, T, B = 70, 20, 40, 50
    pw, ph = W - L - R, H - T - B
    t_end = max(t_end_ns, 1) / 1e9
    lat_min, lat_max = 0.5, 10_000.0  # ms

    def x(t_s):
        return L + pw * min(max(t_s / t_end, 0), 1)

    def y(ms):
        ms = min(max(ms, lat_min), lat_max)
        f = (math.log10(ms) - math.log10(lat_min)) / (math.log10(lat_max) - math.log10(lat_min))
        return T + ph * (1 - f)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="11">' % (W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="20" font-size="14">%s</text>' % (L, escape(title))]
    for i, (s, e, fault) in enumerate(windows):
        xs = x(s / 1e9)
        xe = x((e if e is not None else t_end_ns) / 1e9)
        color = FAULT_COLORS.get(fault, "#999999")
        out.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                   'fill-opacity="0.18"/>' % (xs, T, max(xe - xs, 1), ph, color))
        out.append('<text x="%.1f" y="%d" fill="%s">%s</text>' % (
            xs + 2, T + 12 + 12 * (i % 3), color, escape(fault)))
    # Axes and grid.
    for ms in (1, 10, 100, 1000, 10000):
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (
            L, L + pw, y(ms), y(ms)))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s ms</text>' % (
            L - 5, y(ms) + 4, ms))
    step = max(1, int(t_end / 10))
    t = 0
    while t <= t_end:
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/>' % (
            x(t), x(t), T, T + ph))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%ds</text>' % (
            x(t), T + ph + 15, t))
        t += step
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (
        L, T, pw, ph))
    # Points: infos have no end; they are drawn at the top edge, at their invocation.
    for o in ops:
        if o.end == float("inf"):
            cx, cy = x(o.start / 1e9), T + 3
        else:
            cx, cy = x(o.end / 1e9), y((o.end - o.start) / 1e6)
        out.append('<circle cx="%.1f" cy="%.1f" r="1.6" fill="%s" fill-opacity="0.6"/>' % (
            cx, cy, COLORS.get(o.type, "#000")))
    lx = L
    for k, c in COLORS.items():
        out.append('<circle cx="%d" cy="%d" r="4" fill="%s"/><text x="%d" y="%d">%s</text>' % (
            lx + 5, H - 12, c, lx + 12, H - 8, k))
        lx += 60
    out.append('<text x="%d" y="%d">latency (log) of each op at its completion; '
               'shaded: fault windows</text>' % (lx + 10, H - 8))
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
