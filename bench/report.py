#!/usr/bin/env python3
"""Turns bench/compare.sh's results.tsv into one table (stdout and
results.md) and the throughput chart (throughput.svg, with gnuplot).

  report.py OUT_DIR
"""
import collections
import os
import subprocess
import sys

out = sys.argv[1]
rows = collections.defaultdict(dict)  # (topo, metric) -> {path: (value, unit)}
topos = []
with open(os.path.join(out, "results.tsv"), encoding="utf-8") as f:
    for line in f:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        topo, metric, path, value, unit = parts
        try:
            v = float(value)
        except ValueError:
            continue
        rows[(topo, metric)][path] = (v, unit)
        if topo not in topos:
            topos.append(topo)


def get(topo, metric, path):
    return rows.get((topo, metric), {}).get(path, (None, ""))[0]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "-"


LABELS = [
    ("iperf_P1", "iperf3, 1 stream", "Gbit/s"),
    ("iperf_P8", "iperf3, 8 streams", "Gbit/s"),
    ("iperf_R", "iperf3, 1 stream reverse", "Gbit/s"),
    ("ping_p50", "ping-pong 64 B, p50", "µs"),
    ("ping_p99", "ping-pong 64 B, p99", "µs"),
    ("ping_p50_1cpu", "ping-pong 64 B, p50, all processes on one CPU", "µs"),
    ("opens", "new connections, 8 at a time (open, 1 B echo, half-close, read to the end)", "/s"),
    ("opens_one", "new connections, one at a time (open, 1 B echo, read it, close)", "/s"),
    ("iperf_cpu_P1", "CPU-s per GiB, iperf3 1 stream (tunnel processes)", "s/GiB"),
    ("iperf_cpu_P8", "CPU-s per GiB, iperf3 8 streams (tunnel processes)", "s/GiB"),
]


def builtin_table(topo):
    lines.append("| built-in `bench` target (no TCP hops) | relay (client+relay+agent) | end-to-end (client+relay+agent) | TCP carrier (client+relay+agent) | plain quinn (2 processes) | relay ÷ quinn | end-to-end ÷ quinn | TCP carrier ÷ quinn |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m, label in [("up_1", "client→agent 1 stream"), ("up_n", "client→agent 8 streams"),
                     ("down_1", "agent→client 1 stream"), ("down_n", "agent→client 8 streams")]:
        for metric, suffix in [(f"bench_{m}", "(Gbit/s)"), (f"bench_cpu_{m}", ", CPU-s per GiB")]:
            r, e, t, q = (get(topo, metric, p) for p in ("relay", "e2e", "tcp", "quinn"))
            lines.append(
                f"| {label} {suffix} | {fmt(r)} | {fmt(e)} | {fmt(t)} | {fmt(q)} | {ratio(r, q)} | {ratio(e, q)} | {ratio(t, q)} |"
            )
    for metric, label in [("bench_opens", "stream opens/s, 8 at a time (1 B echo, half-close)"),
                          ("bench_opens_one", "stream opens/s, one at a time (1 B echo, close)"),
                          ("bench_ping_p50", "ping-pong 64 B p50 (µs)")]:
        r, e, t = (get(topo, metric, p) for p in ("relay", "e2e", "tcp"))
        lines.append(f"| {label} | {fmt(r)} | {fmt(e)} | {fmt(t)} | | | | |")
    lines.append("")


def carrier_targets(topo):
    """Issue #15's targets for the TCP carrier against ssh -L, set at MTU 1500
    (the netns topology): at least 0.7× its single-stream throughput, at
    most 1.5× its 64 B round trip (p50). Elsewhere only the ratios."""
    tp, sp = get(topo, "iperf_P1", "tcp"), get(topo, "iperf_P1", "ssh")
    tl, sl = get(topo, "ping_p50", "tcp"), get(topo, "ping_p50", "ssh")
    judged = topo == "netns"

    def verdict(ok, target):
        return f" (target {target}: {'met' if ok else 'NOT met'})" if judged else ""

    parts = []
    if tp is not None and sp:
        parts.append(f"1-stream throughput {tp / sp:.2f}× ssh -L" + verdict(tp / sp >= 0.7, "≥ 0.7×"))
    if tl is not None and sl:
        parts.append(f"ping-pong p50 {tl / sl:.2f}× ssh -L" + verdict(tl / sl <= 1.5, "≤ 1.5×"))
    if parts:
        lines.append("TCP carrier: " + "; ".join(parts) + ".")
        lines.append("")


def chart():
    dat = os.path.join(out, "throughput.dat")
    with open(dat, "w", encoding="utf-8") as f:
        f.write('label "direct TCP" "ssh -L (aes128-gcm)" "relay (client, relay, agent)" "end-to-end (client, relay, agent)"'
                ' "relay over TCP carrier (client, relay, agent)"\n')
        for topo in topos:
            short = {"loopback": "loopback", "netns": "netns MTU 1500"}.get(topo, topo)
            for metric, label in [("iperf_P1", "1 stream"), ("iperf_P8", "8 streams"), ("iperf_R", "reverse")]:
                vals = [get(topo, metric, p) for p in ("direct", "ssh", "relay", "e2e", "tcp")]
                f.write(f'"{label}\\n{short}" ' + " ".join("0" if v is None else f"{v:.3f}" for v in vals) + "\n")
    svg = os.path.join(out, "throughput.svg")
    script = f"""
    set terminal svg size 1200,520 dynamic font "sans,12" background rgb "white"
    set output "{svg}"
    set title "Throughput (iperf3, Gbit/s, higher is better): direct TCP vs ssh -L vs relay vs end-to-end vs TCP carrier"
    set style data histograms
    set style histogram clustered gap 1
    set style fill solid 0.85 border -1
    set boxwidth 0.9
    set ylabel "Gbit/s"
    set yrange [0:*]
    set grid ytics
    set key outside top center horizontal maxrows 1
    set bmargin 5
    set xtics nomirror
    plot "{dat}" using 2:xtic(1) title columnheader(2) lc rgb "#8c8c8c", \\
         "" using 3 title columnheader(3) lc rgb "#e69f00", \\
         "" using 4 title columnheader(4) lc rgb "#0072b2", \\
         "" using 5 title columnheader(5) lc rgb "#009e73", \\
         "" using 6 title columnheader(6) lc rgb "#d55e00"
    """
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, timeout=30)
        print(f"chart: {svg}")
    except (OSError, subprocess.SubprocessError) as e:
        print(f"chart not drawn: {e}", file=sys.stderr)


lines = []
for topo in topos:
    title = {
        "loopback": "loopback (127.0.0.1, MTU 65536)",
        "netns": "network namespaces client | relay | agent, veth MTU 1500",
    }.get(topo, topo)
    lines.append(f"### {title}\n")
    lines.append(
        "| measure | direct TCP | ssh -L | relay (3 processes) | end-to-end (3 processes)"
        " | relay over TCP carrier (3 processes) | relay ÷ ssh -L | end-to-end ÷ ssh -L"
        " | end-to-end ÷ direct | TCP carrier ÷ ssh -L |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for metric, label, unit in LABELS:
        d, s, r, e, t = (get(topo, metric, p) for p in ("direct", "ssh", "relay", "e2e", "tcp"))
        if d is None and s is None and r is None and t is None:
            continue
        lines.append(
            f"| {label} ({unit}) | {fmt(d)} | {fmt(s)} | {fmt(r)} | {fmt(e)} | {fmt(t)}"
            f" | {ratio(r, s)} | {ratio(e, s)} | {ratio(e, d)} | {ratio(t, s)} |"
        )
    lines.append("")
    carrier_targets(topo)
    if get(topo, "bench_up_1", "relay") is not None:
        builtin_table(topo)
    mem = []
    for m, label in [("peak_rss_relay", "relay-server"), ("peak_rss_agent", "relay-agent"),
                     ("peak_rss_client", "relay-client forward")]:
        v = get(topo, m, "relay")
        if v is not None:
            mem.append(f"{label} {v / 1024:.1f} MiB")
    if mem:
        lines.append("Peak RSS after the iperf3 runs: " + ", ".join(mem) + ".")
    n = get(topo, "idle_conns", "relay")
    per = get(topo, "idle_relay_rss_per_conn", "relay")
    if n is not None:
        lines.append(
            f"Idle forwarded connections held through one agent: {n:.0f}"
            + (f"; relay RSS grew {per:.1f} KiB per connection." if per is not None else " (not all arrived).")
        )
    lines.append("")

text = "\n".join(lines)
print(text)
with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")

# Chart: grouped bars, Gbit/s, per topology and test (when iperf3 ran).
if any(get(t, "iperf_P1", "ssh") is not None for t in topos):
    chart()
