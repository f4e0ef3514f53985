"""bench/ttfb.sh's two halves, stdlib only.

`ttfb.py serve PORT`: an SSE upstream shaped as vLLM streams (`/v1/chat/completions`, one
`data:` event per token, EVENTS events GAP_MS apart, the first at once, then `[DONE]`),
and its OpenAPI document at `/openapi.json`.

`ttfb.py measure URL KEY RUNS`: RUNS streamed requests, one at a time; prints the median
and p90 time to the first byte of the body, the median time to the last event, and how
many reads saw more than one event (events coalesced on the way; 0 expected: the upstream
writes each event GAP_MS after the last, so only a proxy that buffers merges them)."""

import http.client
import http.server
import json
import socket
import socketserver
import statistics
import sys
import time

EVENTS = 20
GAP_MS = 5

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "ttfb upstream", "version": "1"},
    "paths": {
        "/v1/chat/completions": {
            "post": {
                "operationId": "chat",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "a stream"}},
            }
        }
    },
}


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each event in its own segment at once, as a model server writes it (no Nagle delay).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = json.dumps(SPEC).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(EVENTS):
            if i:
                time.sleep(GAP_MS / 1000)
            chunk = {"choices": [{"index": 0, "delta": {"content": f" t{i}"}}]}
            self.chunk(f"data: {json.dumps(chunk)}\n\n".encode())
        self.chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def measure(url, key, runs):
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                       "stream": True}).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    firsts, lasts, coalesced = [], [], 0
    connection = http.client.HTTPConnection(host, int(port))
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(runs):
        started = time.perf_counter()
        connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        first = None
        while True:
            data = response.read1(65536)
            if not data:
                break
            if first is None:
                first = time.perf_counter() - started
            if data.count(b"\n\n") > 1:
                coalesced += 1
        firsts.append(first * 1000)
        lasts.append((time.perf_counter() - started) * 1000)
    firsts.sort()
    print(f"ttfb_p50_ms={statistics.median(firsts):.3f} "
          f"ttfb_p90_ms={firsts[int(len(firsts) * 0.9)]:.3f} "
          f"last_event_p50_ms={statistics.median(lasts):.2f} coalesced_reads={coalesced}")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        Server(("127.0.0.1", int(sys.argv[2])), Upstream).serve_forever()
    else:
        measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))
