"""An S3-compatible server on loopback for ScryDB's object-storage tests, with a proxy in
front of it that fails or stalls requests on command.

Starts moto's S3 server (a real HTTP server, not a mock of the client) on 127.0.0.1 at a
free port, creates the buckets named on the command line, starts the proxy on another free
port, and prints one JSON line: {"s3": "http://127.0.0.1:P", "proxy": "http://127.0.0.1:Q"}.
Then it reads commands from stdin, one per line, and answers each with "ok":

    fail N [METHOD] [PATH-SUBSTRING]   the next N matching requests get 503 SlowDown
    stall N SECONDS [METHOD] [PATH]    the next N matching requests wait SECONDS, then
                                       the connection is closed without an answer
    clear                              no more faults
    count                              prints how many requests the proxy forwarded

End of stdin stops everything.

Usage: python s3_server.py BUCKET [BUCKET...]
"""

import http.client
import http.server
import json
import socket
import sys
import threading
import time

from moto.server import ThreadedMotoServer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []  # [kind, remaining, seconds, method, path]
        self.forwarded = 0

    def take(self, method, path):
        with self.lock:
            for rule in self.rules:
                kind, remaining, seconds, m, p = rule
                if remaining > 0 and (m in ("*", method)) and (p in path):
                    rule[1] -= 1
                    return kind, seconds
        return None, 0


FAULTS = Faults()
UPSTREAM = None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        kind, seconds = FAULTS.take(self.command, self.path)
        if kind == "fail":
            msg = b"<Error><Code>SlowDown</Code><Message>injected by the test</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if kind == "stall":
            time.sleep(seconds)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        with FAULTS.lock:
            FAULTS.forwarded += 1
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(k, v)
        if self.command == "HEAD":
            length = resp.getheader("Content-Length")
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    global UPSTREAM
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    UPSTREAM = ("127.0.0.1", port)
    for bucket in sys.argv[1:]:
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=10)
        conn.request("PUT", f"/{bucket}")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"creating bucket {bucket}: HTTP {resp.status}")
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    print(
        json.dumps(
            {
                "s3": f"http://127.0.0.1:{port}",
                "proxy": f"http://127.0.0.1:{proxy.server_address[1]}",
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "fail":
            n = int(words[1])
            method = words[2] if len(words) > 2 else "*"
            path = words[3] if len(words) > 3 else ""
            with FAULTS.lock:
                FAULTS.rules.append(["fail", n, 0, method, path])
        elif words[0] == "stall":
            n, seconds = int(words[1]), float(words[2])
            method = words[3] if len(words) > 3 else "*"
            path = words[4] if len(words) > 4 else ""
            with FAULTS.lock:
                FAULTS.rules.append(["stall", n, seconds, method, path])
        elif words[0] == "clear":
            with FAULTS.lock:
                FAULTS.rules.clear()
        elif words[0] == "count":
            with FAULTS.lock:
                print(FAULTS.forwarded, flush=True)
                continue
        print("ok", flush=True)
    proxy.shutdown()
    moto.stop()


if __name__ == "__main__":
    main()
