#!/usr/bin/env python3
"""Minimal CQL readiness probe: STARTUP + QUERY over native protocol v4.

Usage: cql_ping.py [HOST] [PORT] [TIMEOUT_SECONDS] [CQL]
Runs CQL (default: SELECT release_version FROM system.local) at consistency ONE
and prints the first column of the first row (or the result kind for
statements without rows); exits 1 with the reason on any failure.
Standard library only (no cqlsh / driver on this machine).

Environment: CQL_PING_CA (a CA file: connect over TLS, verifying the
certificate and HOST against it), CQL_PING_USER and CQL_PING_PASSWORD (log in
when the server asks, PasswordAuthenticator).
"""
import os
import socket
import ssl
import struct
import sys

VERSION = 0x04  # request frame, protocol v4
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE, OP_QUERY, OP_RESULT = 0x00, 0x01, 0x02, 0x03, 0x07, 0x08
OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0F, 0x10


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def request(sock, stream, opcode, body):
    sock.sendall(struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body)
    _ver, flags, _stream, op, length = struct.unpack(">BBhBi", recv_exact(sock, 9))
    payload = recv_exact(sock, length)
    if flags & 0x01:
        raise RuntimeError("compressed frame (not negotiated)")
    if flags & 0x02:  # tracing id
        payload = payload[16:]
    if flags & 0x08:  # warnings: [string list]
        off = 2
        for _ in range(struct.unpack_from(">H", payload, 0)[0]):
            off += 2 + struct.unpack_from(">H", payload, off)[0]
        payload = payload[off:]
    if flags & 0x04:  # custom payload: [bytes map]
        off = 2
        for _ in range(struct.unpack_from(">H", payload, 0)[0]):
            off += 2 + struct.unpack_from(">H", payload, off)[0]
            off += 4 + max(struct.unpack_from(">i", payload, off)[0], 0)
        payload = payload[off:]
    if op == OP_ERROR:
        code = struct.unpack(">i", payload[:4])[0]
        mlen = struct.unpack(">H", payload[4:6])[0]
        raise RuntimeError("server error 0x%04x: %s" % (code, payload[6:6 + mlen].decode("utf-8", "replace")))
    return op, payload


def string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def first_cell(payload):
    """First cell of the first row of a Rows result, as text."""
    off = 0
    kind = struct.unpack_from(">i", payload, off)[0]
    off += 4
    if kind != 2:
        return {1: "void", 3: "set_keyspace", 4: "prepared", 5: "schema_change"}.get(kind, "kind %d" % kind)
    flags, ncols = struct.unpack_from(">ii", payload, off)
    off += 8
    if flags & 0x0002:  # has_more_pages: paging state [bytes]
        n = struct.unpack_from(">i", payload, off)[0]
        off += 4 + max(n, 0)
    if flags & 0x0004:  # no_metadata
        raise RuntimeError("no metadata in result")

    def skip_string(o):
        return o + 2 + struct.unpack_from(">H", payload, o)[0]

    def skip_type(o):
        tid = struct.unpack_from(">H", payload, o)[0]
        o += 2
        if tid == 0x0000:  # custom
            o = skip_string(o)
        elif tid in (0x0020, 0x0022):  # list, set
            o = skip_type(o)
        elif tid == 0x0021:  # map
            o = skip_type(skip_type(o))
        elif tid == 0x0030:  # udt
            o = skip_string(skip_string(o))
            n = struct.unpack_from(">H", payload, o)[0]
            o += 2
            for _ in range(n):
                o = skip_type(skip_string(o))
        elif tid == 0x0031:  # tuple
            n = struct.unpack_from(">H", payload, o)[0]
            o += 2
            for _ in range(n):
                o = skip_type(o)
        return o

    if flags & 0x0001:  # global_tables_spec
        off = skip_string(skip_string(off))
    first_type = None
    for _ in range(ncols):
        if not flags & 0x0001:
            off = skip_string(skip_string(off))
        off = skip_string(off)  # column name
        if first_type is None:
            first_type = struct.unpack_from(">H", payload, off)[0]
        off = skip_type(off)
    nrows = struct.unpack_from(">i", payload, off)[0]
    off += 4
    if nrows < 1:
        return "(no rows)"
    n = struct.unpack_from(">i", payload, off)[0]
    off += 4
    if n < 0:
        return "null"
    cell = payload[off:off + n]
    if first_type in (0x0002, 0x0005, 0x0009, 0x0013, 0x0014) and n in (1, 2, 4, 8):  # integers
        return str(int.from_bytes(cell, "big", signed=True))
    if first_type == 0x0004:  # boolean
        return "true" if cell != b"\x00" else "false"
    if first_type in (0x0001, 0x000A, 0x000D):  # ascii, text, varchar
        return cell.decode("utf-8", "replace")
    return "0x" + cell.hex()


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9042
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    cql = sys.argv[4] if len(sys.argv) > 4 else "SELECT release_version FROM system.local"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = raw
            if os.environ.get("CQL_PING_CA"):
                ctx = ssl.create_default_context(cafile=os.environ["CQL_PING_CA"])
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.settimeout(timeout)
            body = struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")
            op, _ = request(sock, 1, OP_STARTUP, body)
            if op == OP_AUTHENTICATE:
                user = os.environ.get("CQL_PING_USER")
                if not user:
                    raise RuntimeError("server requires authentication (set CQL_PING_USER and CQL_PING_PASSWORD)")
                token = b"\0" + user.encode() + b"\0" + os.environ.get("CQL_PING_PASSWORD", "").encode()
                op, _ = request(sock, 1, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
                if op != OP_AUTH_SUCCESS:
                    raise RuntimeError("unexpected AUTH_RESPONSE reply opcode 0x%02x" % op)
                op = OP_READY
            if op != OP_READY:
                raise RuntimeError("unexpected STARTUP reply opcode 0x%02x" % op)
            q = cql.encode()
            body = struct.pack(">i", len(q)) + q + struct.pack(">HB", 0x0001, 0)  # consistency ONE, no flags
            op, payload = request(sock, 2, OP_QUERY, body)
            if op != OP_RESULT:
                raise RuntimeError("unexpected QUERY reply opcode 0x%02x" % op)
            print(first_cell(payload))
            return 0
    except Exception as e:  # noqa: BLE001 - a probe reports any failure the same way
        print("cql_ping: %s:%d: %s" % (host, port, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
