#!/usr/bin/env python3
"""Idle connections for bench/compare.sh (loopback or its own namespaces only).

  idle.py serve PORT        accept on 127.0.0.1:PORT and hold every connection;
                            prints "accepted N" every 1000 and at each pause
  idle.py connect PORT N    open N connections to 127.0.0.1:PORT, print
                            "connected N", then hold them until killed

Connections open at most RATE per second (1000): the relay limits each
client identity to 2000 opens per second by default, and this measures
memory, not that limit.
"""
import socket
import sys
import time

RATE = 1000


def serve(port: int) -> None:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.settimeout(1.0)
    held = []
    print("listening", flush=True)
    while True:
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            print(f"accepted {len(held)}", flush=True)
            continue
        held.append(conn)
        if len(held) % 1000 == 0:
            print(f"accepted {len(held)}", flush=True)


def connect(port: int, n: int) -> None:
    held = []
    start = time.monotonic()
    deadline = start + 120
    for i in range(n):
        if time.monotonic() > deadline:
            break
        ahead = start + i / RATE - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(s)
    print(f"connected {len(held)}", flush=True)
    while True:  # hold them until killed
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        connect(int(sys.argv[2]), int(sys.argv[3]))
