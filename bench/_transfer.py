"""Timed TCP transfers for bench/calibration.py, run inside the host bed's
namespaces (standard library only: it starts in a fraction of a second).

    python _transfer.py serve PORT
    python _transfer.py send PORT SIZE REPEAT HOST [HOST ...]

``serve`` answers every connection: for each 8-byte length it reads that
many bytes, then sends one byte back.  ``send`` opens one connection per
HOST, times 20 round trips of a 1-byte message on each, then REPEAT
times sends SIZE bytes on every connection at once and times each from the
common start until its byte comes back; it prints one JSON line:
``{"rtt_s": [...], "runs": [[seconds per connection], ...]}``.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

_HEADER = struct.Struct("!Q")
PINGS = 20  # per connection: the least is the round trip; the rest is scheduling


def _read_exactly(conn: socket.socket, n: int, buffer: bytearray) -> bool:
    view = memoryview(buffer)
    while n > 0:
        got = conn.recv_into(view[: min(n, len(buffer))])
        if got == 0:
            return False
        n -= got
    return True


def _answer(conn: socket.socket) -> None:
    buffer = bytearray(1 << 20)
    with conn:
        while _read_exactly(conn, _HEADER.size, buffer):
            (size,) = _HEADER.unpack_from(buffer)
            if not _read_exactly(conn, size, buffer):
                return
            conn.sendall(b"!")


def serve(port: int) -> None:
    with socket.create_server(("0.0.0.0", port), backlog=16) as server:
        print("ready", flush=True)
        while True:
            conn, _ = server.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_answer, args=(conn,), daemon=True).start()


def _exchange(conn: socket.socket, size: int, payload: bytes, start: threading.Barrier) -> float:
    start.wait()
    began = time.perf_counter()
    conn.sendall(_HEADER.pack(size))
    conn.sendall(payload)
    if conn.recv(1) != b"!":
        raise ConnectionError("no answer")
    return time.perf_counter() - began


def _timed(
    times: list[float],
    i: int,
    conn: socket.socket,
    size: int,
    payload: bytes,
    start: threading.Barrier,
) -> None:
    times[i] = _exchange(conn, size, payload, start)


def send(port: int, size: int, repeat: int, hosts: list[str]) -> None:
    conns = []
    for host in hosts:
        conn = socket.create_connection((host, port), timeout=600)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    rtts = []
    for conn in conns:
        for _ in range(PINGS):
            began = time.perf_counter()
            conn.sendall(_HEADER.pack(1) + b"x")
            conn.recv(1)
            rtts.append(time.perf_counter() - began)
    payload = bytes(size)
    runs = []
    for _ in range(repeat):
        barrier = threading.Barrier(len(conns))
        times = [0.0] * len(conns)
        threads = [
            threading.Thread(target=_timed, args=(times, i, c, size, payload, barrier))
            for i, c in enumerate(conns)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runs.append(times)
        time.sleep(0.3)  # let the queues drain
    print(json.dumps({"rtt_s": rtts, "runs": runs}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        send(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
