#!/usr/bin/env bash
# Side-by-side benchmark, one run, one machine:
#   our path    iperf3/bench client -> relay-client --end-to-end=off forward -> relay-server
#               -> relay-agent -> target (the relay path)
#   end-to-end  the same with `relay-client --end-to-end forward` (the default path, made
#               strict here): the relay forwards the client's own QUIC connection to the agent
#   TCP carrier the same as our path with agent and client on `--transport tcp`
#               (QUIC carried over TLS/TCP, for networks that block UDP); a
#               second agent, bench-agent-tcp, on the same relay and port
#   ssh -L      iperf3/bench client -> ssh -L (aes128-gcm) -> sshd -> target
#   direct TCP  iperf3/bench client -> target
#   plain quinn relay-client bench --quic -> bench-quic-server (one QUIC hop, the CPU yardstick)
# in two topologies: loopback, and three network namespaces (client, relay,
# agent) joined by veth links with MTU 1500, routed through the relay's.
#
# Usage: bench/compare.sh            (as root; installs what it lacks with apt-get)
#   TOPOLOGIES="loopback netns"  DURATION=8 (iperf3 seconds)  BYTES=1GiB (bench bulk)
#   IDLE_CONNS=10000  OUT=docs/bench  SKIP_BUILD=1
#   ROUNDS=3 (interleaved rounds of ping-pong/opens and of built-in target
#   vs plain quinn; the medians are reported)
#   PARTS="iperf ping bulk idle" (a subset re-runs only those measurements,
#   e.g. PARTS=ping TOPOLOGIES=netns for the round trip alone)
# Writes $OUT/results.tsv, $OUT/results.md, $OUT/throughput.svg and prints the table.
# Every step runs under `timeout`; everything started is killed by PID and
# the namespaces it created are deleted, on any exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/docs/bench}
TOPOLOGIES=${TOPOLOGIES:-"loopback netns"}
DURATION=${DURATION:-8}
BYTES=${BYTES:-1GiB}
PINGS=${PINGS:-5000}
OPENS=${OPENS:-3000}
ROUNDS=${ROUNDS:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
CIPHER=${CIPHER:-aes128-gcm@openssh.com}
PARTS=${PARTS:-"iperf ping bulk idle"}
BIN=$ROOT/target/release
NS=rbench # namespace prefix: rbench-client, rbench-relay, rbench-agent

PIDS=()
CREATED_NS=()
WORK=$(mktemp -d /tmp/relay-compare.XXXXXX)

log() { printf '[compare] %s\n' "$*" >&2; }

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null; done
    for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ -n "${KEEP_WORK:-}" ]; then echo "logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools --------------------------------------------------------------------
need_root() { [ "$(id -u)" = 0 ] || { echo "run as root (sshd, namespaces, apt-get)" >&2; exit 1; }; }

install_missing() {
    local missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null || missing+=(openssh-client)
    command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v pgrep >/dev/null || missing+=(procps)
    command -v jq >/dev/null || missing+=(jq)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# ---- helpers -------------------------------------------------------------------
# run_in ROLE CMD...: in the role's namespace (netns topology) or here (loopback).
run_in() {
    local role=$1; shift
    if [ "$TOPO" = netns ]; then ip netns exec "$NS-$role" "$@"; else "$@"; fi
}

# start ROLE NAME CMD...: background process; its stdout/stderr go to $WORK/NAME.{out,err}.
start() {
    local role=$1 name=$2; shift 2
    # Not through run_in: `$!` must be the program itself, not a subshell
    # (`ip netns exec` execs the program in place).
    if [ "$TOPO" = netns ]; then
        ip netns exec "$NS-$role" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    else
        "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    fi
    local pid=$!
    PIDS+=("$pid")
    eval "PID_${name//-/_}=$pid"
}

# wait_line FILE PREFIX: prints what follows PREFIX once a line starts with it.
wait_line() {
    local file=$1 prefix=$2
    timeout 30 bash -c "until grep -q '^$prefix' '$file' 2>/dev/null; do sleep 0.05; done" \
        || { echo "timed out waiting for '$prefix' in $file" >&2; cat "${file%.out}.err" >&2 || true; exit 1; }
    grep -m1 "^$prefix" "$file" | sed "s/^$prefix//"
}

# wait_port ROLE HOST PORT: until a TCP connect succeeds.
wait_port() {
    run_in "$1" timeout 30 bash -c "until (exec 3<>/dev/tcp/$2/$3) 2>/dev/null; do sleep 0.05; done" \
        || { echo "timed out waiting for $2:$3" >&2; exit 1; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu PID...: user+system seconds of the processes (and their children, for sshd).
cpu() {
    local total=0 pid t
    for pid in "$@"; do
        for t in $pid $(pgrep -P "$pid" 2>/dev/null) $(pgrep -P "$(pgrep -d, -P "$pid" 2>/dev/null || echo 0)" 2>/dev/null); do
            [ -r "/proc/$t/stat" ] || continue
            total=$(awk -v t="$total" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / 100 }' "/proc/$t/stat")
        done
    done
    echo "$total"
}

# median_of KIND FIELD TEST: the median over this topology's rounds of
# .measured.TEST.FIELD in $WORK/KIND-$TOPO-*.json.
median_of() {
    jq -s "[.[].measured.$3.$2] | sort | .[length / 2 | floor]" "$WORK/$1-$TOPO"-*.json
}

# part NAME: whether this run measures NAME (one of $PARTS).
part() { [[ " $PARTS " == *" $1 "* ]]; }

# ping_rounds KIND [WRAPPER...]: ROUNDS interleaved rounds of ping-pong and
# opens through the five paths, into $WORK/KIND$path-$TOPO-$round.json.
ping_rounds() {
    local kind=$1 round path host port; shift
    for ((round = 1; round <= ROUNDS; round++)); do
        for path in direct ssh relay e2e tcp; do
            case $path in
                direct) host=$AGENT_IP port=$bench_port ;;
                ssh) host=127.0.0.1 port=$ssh_bench ;;
                relay) host=127.0.0.1 port=$fwd_bench ;;
                e2e) host=127.0.0.1 port=$e2e_bench ;;
                tcp) host=127.0.0.1 port=$tcp_bench ;;
            esac
            run_in client timeout 300 "$@" "$BIN/relay-client" bench --tcp "$host:$port" --json \
                --bytes 1MiB --pings "$PINGS" --opens "$OPENS" --streams 8 >"$WORK/$kind$path-$TOPO-$round.json" \
                || { log "bench $kind $path failed"; rm -f "$WORK/$kind$path-$TOPO-$round.json"; }
        done
    done
}

# descendants PID...: the PIDs and all their children, recursively (sshd
# serves each connection from a child process).
descendants() {
    local pid
    for pid in "$@"; do
        echo "$pid"
        # shellcheck disable=SC2046
        descendants $(pgrep -P "$pid" 2>/dev/null)
    done
}

# pin CPUS PID...: every thread of the processes onto CPUS.
pin() {
    local cpus=$1 pid; shift
    for pid in "$@"; do taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 || true; done
}

hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# record TOPO METRIC PATH VALUE UNIT
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$OUT/results.tsv"; }

# ---- topologies --------------------------------------------------------------------
setup_netns() {
    for r in client relay agent; do
        ip netns add "$NS-$r"
        CREATED_NS+=("$NS-$r")
        ip -n "$NS-$r" link set lo up
    done
    ip link add rb-c0 netns "$NS-client" type veth peer name rb-r0 netns "$NS-relay"
    ip link add rb-a0 netns "$NS-agent" type veth peer name rb-r1 netns "$NS-relay"
    # Addresses exist only inside these namespaces; nothing is routed out.
    ip -n "$NS-client" addr add 10.77.1.1/24 dev rb-c0
    ip -n "$NS-relay" addr add 10.77.1.2/24 dev rb-r0
    ip -n "$NS-relay" addr add 10.77.2.2/24 dev rb-r1
    ip -n "$NS-agent" addr add 10.77.2.1/24 dev rb-a0
    for l in "client rb-c0" "relay rb-r0" "relay rb-r1" "agent rb-a0"; do
        set -- $l
        ip -n "$NS-$1" link set "$2" mtu 1500 up
    done
    ip -n "$NS-client" route add 10.77.2.0/24 via 10.77.1.2
    ip -n "$NS-agent" route add 10.77.1.0/24 via 10.77.2.2
    ip netns exec "$NS-relay" sysctl -qw net.ipv4.ip_forward=1
    RELAY_IP=10.77.1.2 AGENT_IP=10.77.2.1 AGENT_BIND=0.0.0.0
}

setup_loopback() { RELAY_IP=127.0.0.1 AGENT_IP=127.0.0.1 AGENT_BIND=127.0.0.1; }

# ---- one topology ----------------------------------------------------------------------
run_topology() {
    TOPO=$1
    log "topology $TOPO"
    PIDS_BEFORE=${#PIDS[@]}
    if [ "$TOPO" = netns ]; then setup_netns; else setup_loopback; fi
    local d=$WORK/$TOPO && mkdir -p "$d"

    # Targets, in the agent's place.
    local iperf_port ssh_port
    iperf_port=$(free_port)
    ssh_port=$(free_port)
    start agent iperf3 iperf3 -s -B "$AGENT_BIND" -p "$iperf_port"
    start agent benchsrv "$BIN/relay-agent" bench-server --listen "$AGENT_BIND:0"
    local bench_port
    bench_port=$(wait_line "$WORK/benchsrv.out" "bench-server listening on " | sed 's/.*://')
    wait_port agent "$AGENT_IP" "$iperf_port"
    local hold_port
    hold_port=$(free_port)
    start agent hold python3 "$ROOT/bench/idle.py" serve "$hold_port"
    wait_line "$WORK/hold.out" listening >/dev/null

    # Relay, agent, client forwards.
    timeout 60 "$BIN/relay-server" init --dir "$d/relay" --name "$RELAY_IP" >/dev/null
    # Client bench may reach both agents: bench-agent (QUIC, the default
    # transport) and bench-agent-tcp (the TCP carrier).
    printf '[[allow]]\nclient = "bench"\nagent = "%s"\ntargets = ["*"]\n\n' bench-agent bench-agent-tcp >"$d/relay/policy.toml"
    # No open-rate limit (2,000/s per client by default): the open-rate
    # rows measure the tunnel, not the limiter.
    start relay relay "$BIN/relay-server" run --dir "$d/relay" --listen "$RELAY_IP:0" --max-open-rate 1000000
    local relay_addr
    # The first line (the UDP address; the TCP carrier listens on the same
    # port, printed on the next line as `relay-server tcp carrier on ADDR`).
    relay_addr=$(wait_line "$WORK/relay.out" "relay-server listening on ")
    wait_line "$WORK/relay.out" "relay-server tcp carrier on " >/dev/null
    timeout 60 "$BIN/relay-server" issue agent bench-agent --dir "$d/relay" --relay "$relay_addr" --out "$d/agent.cred" >/dev/null 2>&1
    timeout 60 "$BIN/relay-server" issue agent bench-agent-tcp --dir "$d/relay" --relay "$relay_addr" --out "$d/agent_tcp.cred" >/dev/null 2>&1
    timeout 60 "$BIN/relay-server" issue client bench --dir "$d/relay" --relay "$relay_addr" --out "$d/client.cred" >/dev/null 2>&1
    start agent agent "$BIN/relay-agent" --credential "$d/agent.cred" --transport quic --expose-bench --max-direct-open-rate 1000000 \
        --expose "iperf=127.0.0.1:$iperf_port" --expose "benchtcp=127.0.0.1:$bench_port" \
        --expose "hold=127.0.0.1:$hold_port"
    timeout 30 bash -c "until grep -q 'registered with relay' '$WORK/agent.err'; do sleep 0.05; done"
    # The same agent again, on the TCP carrier only (no hold target: the
    # idle part uses the QUIC agent).
    start agent agent_tcp "$BIN/relay-agent" --transport tcp --credential "$d/agent_tcp.cred" --expose-bench \
        --expose "iperf=127.0.0.1:$iperf_port" --expose "benchtcp=127.0.0.1:$bench_port"
    timeout 30 bash -c "until grep -q 'registered with relay' '$WORK/agent_tcp.err'; do sleep 0.05; done" \
        || { echo "timed out waiting for bench-agent-tcp to register" >&2; cat "$WORK/agent_tcp.err" >&2; exit 1; }
    local fwd_iperf fwd_bench fwd_hold
    fwd_iperf=$(free_port)
    fwd_bench=$(free_port)
    fwd_hold=$(free_port)
    start client forward "$BIN/relay-client" --credential "$d/client.cred" --transport quic --end-to-end=off forward \
        "127.0.0.1:$fwd_iperf" bench-agent/iperf "127.0.0.1:$fwd_bench" bench-agent/benchtcp \
        "127.0.0.1:$fwd_hold" bench-agent/hold
    wait_port client 127.0.0.1 "$fwd_bench"
    local e2e_iperf e2e_bench
    e2e_iperf=$(free_port)
    e2e_bench=$(free_port)
    start client forward_e2e "$BIN/relay-client" --credential "$d/client.cred" --transport quic --end-to-end forward \
        "127.0.0.1:$e2e_iperf" bench-agent/iperf "127.0.0.1:$e2e_bench" bench-agent/benchtcp
    wait_port client 127.0.0.1 "$e2e_bench"
    local tcp_iperf tcp_bench
    tcp_iperf=$(free_port)
    tcp_bench=$(free_port)
    start client forward_tcp "$BIN/relay-client" --credential "$d/client.cred" --transport tcp --end-to-end=off forward \
        "127.0.0.1:$tcp_iperf" bench-agent-tcp/iperf "127.0.0.1:$tcp_bench" bench-agent-tcp/benchtcp
    wait_port client 127.0.0.1 "$tcp_bench"

    # sshd in the agent's place, ssh -L in the client's.
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$d/user_key"
    mkdir -p /run/sshd
    cat >"$d/sshd_config" <<EOF
ListenAddress $AGENT_IP
Port $ssh_port
HostKey $d/host_key
AuthorizedKeysFile $d/user_key.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
Ciphers $CIPHER
AllowTcpForwarding yes
MaxStartups 2000
MaxSessions 2000
PidFile none
StrictModes no
EOF
    start agent sshd /usr/sbin/sshd -D -e -f "$d/sshd_config"
    wait_port agent "$AGENT_IP" "$ssh_port"
    local ssh_iperf ssh_bench
    ssh_iperf=$(free_port)
    ssh_bench=$(free_port)
    start client ssh ssh -N -T -c "$CIPHER" -i "$d/user_key" -p "$ssh_port" \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes \
        -L "127.0.0.1:$ssh_iperf:127.0.0.1:$iperf_port" -L "127.0.0.1:$ssh_bench:127.0.0.1:$bench_port" \
        "root@$AGENT_IP"
    wait_port client 127.0.0.1 "$ssh_bench"

    # -- iperf3: direct, ssh -L, our paths (QUIC, end-to-end, TCP carrier);
    #    1 stream, 8 streams, reverse.
    local path host port mode args json bps bytes c0 c1
    part iperf && for path in direct ssh relay e2e tcp; do
        case $path in
            direct) host=$AGENT_IP port=$iperf_port ;;
            ssh) host=127.0.0.1 port=$ssh_iperf ;;
            relay) host=127.0.0.1 port=$fwd_iperf ;;
            e2e) host=127.0.0.1 port=$e2e_iperf ;;
            tcp) host=127.0.0.1 port=$tcp_iperf ;;
        esac
        for mode in P1 P8 R; do
            case $mode in P1) args="-P 1" ;; P8) args="-P 8" ;; R) args="-P 1 -R" ;; esac
            case $path in
                direct) c0=0 ;;
                ssh) c0=$(cpu "$PID_ssh" "$PID_sshd") ;;
                relay) c0=$(cpu "$PID_relay" "$PID_agent" "$PID_forward") ;;
                e2e) c0=$(cpu "$PID_relay" "$PID_agent" "$PID_forward_e2e") ;;
                tcp) c0=$(cpu "$PID_relay" "$PID_agent_tcp" "$PID_forward_tcp") ;;
            esac
            # shellcheck disable=SC2086
            json=$(run_in client timeout $((DURATION + 30)) iperf3 -c "$host" -p "$port" -t "$DURATION" -J $args) \
                || { log "iperf3 $path $mode failed"; continue; }
            case $path in
                direct) c1=0 ;;
                ssh) c1=$(cpu "$PID_ssh" "$PID_sshd") ;;
                relay) c1=$(cpu "$PID_relay" "$PID_agent" "$PID_forward") ;;
                e2e) c1=$(cpu "$PID_relay" "$PID_agent" "$PID_forward_e2e") ;;
                tcp) c1=$(cpu "$PID_relay" "$PID_agent_tcp" "$PID_forward_tcp") ;;
            esac
            bps=$(jq '.end.sum_received.bits_per_second' <<<"$json")
            bytes=$(jq '.end.sum_received.bytes' <<<"$json")
            record "$TOPO" "iperf_$mode" "$path" "$(awk -v b="$bps" 'BEGIN { printf "%.3f", b / 1e9 }')" Gbit/s
            if [ "$path" != direct ]; then
                record "$TOPO" "iperf_cpu_$mode" "$path" \
                    "$(awk -v a="$c0" -v b="$c1" -v n="$bytes" 'BEGIN { printf "%.3f", (b - a) / (n / 1073741824) }')" s/GiB
            fi
            log "$TOPO iperf3 $mode $path: $(awk -v b="$bps" 'BEGIN { printf "%.2f", b / 1e9 }') Gbit/s"
        done
    done
    # Peak RSS so far: set-up, idle, and the iperf3 runs (8 streams included).
    record "$TOPO" peak_rss_relay relay "$(hwm_kib "$PID_relay")" KiB
    record "$TOPO" peak_rss_agent relay "$(hwm_kib "$PID_agent")" KiB
    record "$TOPO" peak_rss_client relay "$(hwm_kib "$PID_forward")" KiB

    # -- ping-pong and connection rate through each forward (same client
    #    program), ROUNDS interleaved rounds of the five paths; medians.
    #    Then the round trip again with every process on one CPU: on a VM,
    #    waking a process on an idle vCPU costs tens of µs (most of a free
    #    round trip here), so the pinned figure is the path's own cost.
    if part ping; then
        ping_rounds tcp
        local pids
        pids=$(descendants "${PIDS[@]:$PIDS_BEFORE}")
        pin 0 $pids
        ping_rounds tcp1cpu taskset -c 0
        pin "0-$(($(nproc) - 1))" $pids
        for path in direct ssh relay e2e tcp; do
            ls "$WORK/tcp$path-$TOPO"-*.json "$WORK/tcp1cpu$path-$TOPO"-*.json >/dev/null 2>&1 || continue
            record "$TOPO" ping_p50 "$path" "$(median_of "tcp$path" p50_us ping)" µs
            record "$TOPO" ping_p99 "$path" "$(median_of "tcp$path" p99_us ping)" µs
            record "$TOPO" opens "$path" "$(median_of "tcp$path" per_s opens)" /s
            record "$TOPO" opens_one "$path" "$(median_of "tcp$path" per_s opens_one)" /s
            record "$TOPO" ping_p50_1cpu "$path" "$(median_of "tcp1cpu$path" p50_us ping)" µs
            log "$TOPO $path (median of $ROUNDS): ping p50 $(median_of "tcp$path" p50_us ping) µs" \
                "($(median_of "tcp1cpu$path" p50_us ping) µs on one CPU), $(median_of "tcp$path" per_s opens) conns/s" \
                "(8 at a time, half-close), $(median_of "tcp$path" per_s opens_one) conns/s (one at a time)"
        done
    fi

    # -- relay-client bench to the agent's built-in target (no TCP hops), with
    #    the CPU of client + relay + agent, against plain quinn (two
    #    processes). ROUNDS interleaved rounds; the bulk figures recorded are
    #    the medians (one 1 GiB sample moves by ±10% between runs).
    if part bulk; then
        start relay quicsrv "$BIN/relay-client" bench-quic-server --dir "$d/relay" --listen "$RELAY_IP:0"
        local quic_addr round pings opens
        quic_addr=$(wait_line "$WORK/quicsrv.out" "bench-quic-server listening on ")
        for ((round = 1; round <= ROUNDS; round++)); do
            # Ping-pong and opens in the first round only.
            if [ "$round" = 1 ]; then pings=$PINGS opens=$OPENS; else pings=10 opens=10; fi
            run_in client timeout 600 "$BIN/relay-client" --credential "$d/client.cred" --transport quic --end-to-end=off bench --agent bench-agent --json \
                --bytes "$BYTES" --pings "$pings" --opens "$opens" --no-direct \
                --cpu-pid "$PID_relay" --cpu-pid "$PID_agent" >"$WORK/bench-$TOPO-$round.json"
            run_in client timeout 600 "$BIN/relay-client" --credential "$d/client.cred" --transport quic --end-to-end bench --agent bench-agent --json \
                --bytes "$BYTES" --pings "$pings" --opens "$opens" --no-direct \
                --cpu-pid "$PID_relay" --cpu-pid "$PID_agent" >"$WORK/e2e-$TOPO-$round.json"
            run_in client timeout 600 "$BIN/relay-client" --credential "$d/client.cred" --transport tcp --end-to-end=off bench --agent bench-agent-tcp --json \
                --bytes "$BYTES" --pings "$pings" --opens "$opens" --no-direct \
                --cpu-pid "$PID_relay" --cpu-pid "$PID_agent_tcp" >"$WORK/tcp-$TOPO-$round.json"
            run_in client timeout 600 "$BIN/relay-client" --credential "$d/client.cred" bench --quic "$quic_addr" --json \
                --bytes "$BYTES" --pings "$pings" --opens "$opens" --cpu-pid "$PID_quicsrv" >"$WORK/quic-$TOPO-$round.json"
        done
        cp "$WORK/bench-$TOPO-1.json" "$OUT/bench-$TOPO.json"
        cp "$WORK/quic-$TOPO-1.json" "$OUT/quic-$TOPO.json"
        cp "$WORK/e2e-$TOPO-1.json" "$OUT/e2e-$TOPO.json"
        cp "$WORK/tcp-$TOPO-1.json" "$OUT/tcp-$TOPO.json"
        local m kind
        for kind in bench quic e2e tcp; do
            for m in up_1 up_n down_1 down_n; do
                local path=relay
                [ "$kind" = quic ] && path=quinn
                [ "$kind" = e2e ] && path=e2e
                [ "$kind" = tcp ] && path=tcp
                record "$TOPO" "bench_$m" "$path" "$(median_of "$kind" gbit_s "$m")" Gbit/s
                record "$TOPO" "bench_cpu_$m" "$path" "$(median_of "$kind" cpu_s_per_gib "$m")" s/GiB
            done
        done
        b=$(cat "$WORK/bench-$TOPO-1.json")
        record "$TOPO" bench_opens relay "$(jq '.measured.opens.per_s' <<<"$b")" /s
        record "$TOPO" bench_opens_one relay "$(jq '.measured.opens_one.per_s' <<<"$b")" /s
        record "$TOPO" bench_ping_p50 relay "$(jq '.measured.ping.p50_us' <<<"$b")" µs
        b=$(cat "$WORK/e2e-$TOPO-1.json")
        record "$TOPO" bench_opens e2e "$(jq '.measured.opens.per_s' <<<"$b")" /s
        record "$TOPO" bench_opens_one e2e "$(jq '.measured.opens_one.per_s' <<<"$b")" /s
        record "$TOPO" bench_ping_p50 e2e "$(jq '.measured.ping.p50_us' <<<"$b")" µs
        b=$(cat "$WORK/tcp-$TOPO-1.json")
        record "$TOPO" bench_opens tcp "$(jq '.measured.opens.per_s' <<<"$b")" /s
        record "$TOPO" bench_opens_one tcp "$(jq '.measured.opens_one.per_s' <<<"$b")" /s
        record "$TOPO" bench_ping_p50 tcp "$(jq '.measured.ping.p50_us' <<<"$b")" µs
        log "$TOPO built-in vs plain quinn, up 1 stream (median of $ROUNDS): $(median_of bench cpu_s_per_gib up_1) vs $(median_of quic cpu_s_per_gib up_1) CPU-s/GiB"
    fi

    # -- idle connections, last: the relay's memory per held forwarded
    #    connection (RSS before and after; the bulk runs before may have left
    #    free memory in the allocator, which would hide growth, so the relay's
    #    RSS before is also recorded).
    if part idle && [ "$IDLE_CONNS" -gt 0 ]; then
        local rss0 rss1 held
        rss0=$(rss_kib "$PID_relay")
        record "$TOPO" idle_relay_rss_before relay "$rss0" KiB
        start client idle python3 "$ROOT/bench/idle.py" connect "$fwd_hold" "$IDLE_CONNS"
        if timeout 180 bash -c "until grep -q '^accepted $IDLE_CONNS\$' '$WORK/hold.out'; do sleep 0.2; done"; then
            rss1=$(rss_kib "$PID_relay")
            held=$IDLE_CONNS
            record "$TOPO" idle_conns relay "$held" conns
            record "$TOPO" idle_relay_rss_per_conn relay "$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { printf "%.1f", (b - a) / n }')" KiB
            record "$TOPO" idle_relay_rss relay "$rss1" KiB
            log "$TOPO: $held idle connections held; relay RSS $rss0 -> $rss1 KiB"
        else
            log "$TOPO: idle connections did not all arrive: $(tail -1 "$WORK/hold.out")"
            record "$TOPO" idle_conns relay "$(tail -1 "$WORK/hold.out" | awk '{ print $2 }')" conns
        fi
        kill "$PID_idle" 2>/dev/null || true
    fi


    # Stop this topology's processes (by PID), then its namespaces.
    local i
    for ((i = PIDS_BEFORE; i < ${#PIDS[@]}; i++)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for ((i = PIDS_BEFORE; i < ${#PIDS[@]}; i++)); do
        timeout 5 tail --pid="${PIDS[$i]}" -f /dev/null 2>/dev/null || kill -9 "${PIDS[$i]}" 2>/dev/null || true
    done
    if [ "$TOPO" = netns ]; then
        for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
        CREATED_NS=()
    fi
}

# ---- main ----------------------------------------------------------------------------
need_root
install_missing
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building release binaries"
    (cd "$ROOT" && timeout 3600 cargo build --release -p relay-server -p relay-agent -p relay-client)
fi
mkdir -p "$OUT"
: >"$OUT/results.tsv"
ulimit -n 1048576 2>/dev/null || ulimit -n 65536 2>/dev/null || true
for t in $TOPOLOGIES; do
    if [ "$t" = netns ] && ! ip netns add "$NS-probe" 2>/dev/null; then
        log "network namespaces not available here: skipping netns"
        continue
    fi
    [ "$t" = netns ] && ip netns del "$NS-probe"
    run_topology "$t"
done
timeout 60 python3 "$ROOT/bench/report.py" "$OUT"
