#!/usr/bin/env python3
"""Stand-ins for the services derpd asks whether a client may connect.

Real tailscaled cannot run in the tests: it needs a control server and is not
packaged in Debian. Its LocalAPI's WhoIs is a plain HTTP/1.1 GET over a unix
socket, so this is a real HTTP server (Python's http.server) on a unix socket
answering the way tailscaled's localapi handler does: 200 with a WhoIsResponse
naming the node, 404 for a node key it does not know, 400 "invalid 'addr'
parameter" from versions without WhoIs by node key, 500 with an error body.
The admission URL is an ordinary HTTP server, so its stand-in is one too.

  verify_standins.py localapi SOCKET_PATH RULES_FILE LOG_FILE
  verify_standins.py admission PORT_FILE RULES_FILE LOG_FILE

RULES_FILE (JSON, read at every request so a test can change it):
{"<64 hex node key>": behaviour, "*": behaviour for any other key}.
  localapi:  known, unknown (the default), error, tooold, slow (8 s), delayed (1 s)
  admission: allow (the default), deny, status500, garbage, huge, hang
Every request is appended to LOG_FILE as one JSON line: method, target,
headers (in order), body.
"""
import http.server
import json
import os
import socketserver
import sys
import threading
import time

MODE, ADDR, RULES, LOG = sys.argv[1:5]
LOG_LOCK = threading.Lock()


def rule_for(key_hex, default):
    try:
        with open(RULES) as f:
            rules = json.load(f)
    except (OSError, ValueError):
        rules = {}
    return rules.get(key_hex, rules.get("*", default))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the request log below is the one kept
        pass

    def address_string(self):
        return "unix"

    def record(self, body):
        entry = {"method": self.command, "target": self.path,
                 "version": self.request_version,
                 "headers": [[k, v] for k, v in self.headers.items()],
                 "body": body}
        with LOG_LOCK, open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def reply(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.record("")
        prefix = "/localapi/v0/whois?addr=nodekey%3A"
        if MODE != "localapi" or not self.path.startswith(prefix):
            self.reply(404, "not found\n", "text/plain")
            return
        key = self.path[len(prefix):]
        what = rule_for(key, "unknown")
        if what in ("slow", "delayed"):
            time.sleep(8 if what == "slow" else 1)
            what = "known"
        if what == "known":
            self.reply(200, json.dumps({
                "Node": {"ID": 7, "StableID": "nstable7", "Name": "laptop.tail1234.ts.net.",
                         "Key": "nodekey:" + key, "Addresses": ["100.64.0.7/32"]},
                "UserProfile": {"ID": 1, "LoginName": "ops@example.com",
                                "DisplayName": "Ops"},
                "CapMap": {}}))
        elif what == "tooold":
            self.reply(400, "invalid 'addr' parameter\n", "text/plain; charset=utf-8")
        elif what == "error":
            self.reply(500, json.dumps({"error": "backend not running"}))
        else:
            self.reply(404, "no match for node key\n", "text/plain; charset=utf-8")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode(errors="replace")
        self.record(body)
        try:
            key = json.loads(body)["NodePublic"].split(":", 1)[1]
        except (ValueError, KeyError, IndexError, AttributeError):
            key = ""
        what = rule_for(key, "allow")
        if what == "hang":
            time.sleep(30)
            return
        if what == "allow":
            self.reply(200, '{"Allow":true}')
        elif what == "deny":
            self.reply(200, '{"Allow":false}')
        elif what == "status500":
            self.reply(500, "internal error\n", "text/plain")
        elif what == "garbage":
            self.reply(200, "<html>Allow: yes</html>", "text/html")
        elif what == "huge":
            # 5 MiB: the first 4 KiB are not a whole JSON value.
            self.reply(200, '{"Note":"' + "x" * (5 << 20) + '","Allow":true}')
        else:
            self.reply(400, "unknown rule\n", "text/plain")


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if MODE == "localapi":
    if os.path.exists(ADDR):
        os.unlink(ADDR)
    server = UnixServer(ADDR, Handler)
else:
    server = TcpServer(("127.0.0.1", 0), Handler)
    with open(ADDR + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(ADDR + ".tmp", ADDR)
server.serve_forever()
