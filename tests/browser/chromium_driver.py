#!/usr/bin/python3
"""Runs derp_page.js in Debian's headless chromium for chromium_test.

    chromium_driver.py --prepare
        installs the page's npm packages (package-lock.json, from the npm
        registry) into $DERPD_BROWSER_WORK; exits 77 when npm cannot.
    chromium_driver.py URL --key PRIVHEX --peer PUBHEX [--spki B64] [--resolve NAME]
        serves the page from 127.0.0.1 (this process, not derpd), opens it in
        headless chromium with the DERP URL, key and peer in its query, and
        reads the page's title through the DevTools HTTP endpoint until it says
        "ok" (exit 0) or "fail: ..." (exit 1). --spki trusts a certificate by its
        public key's SHA-256 (the test CA's leaf); --resolve maps NAME to
        127.0.0.1 inside chromium. Exits 77 when chromium cannot start.
"""
import argparse
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def work_dir():
    d = os.environ.get("DERPD_BROWSER_WORK") or os.path.join(tempfile.gettempdir(), "derpd-browser")
    os.makedirs(d, exist_ok=True)
    return d


def nacl_path():
    return os.path.join(work_dir(), "node_modules", "tweetnacl", "nacl-fast.min.js")


def prepare():
    npm = shutil.which("npm")
    if npm is None:
        print("skipped: npm is not installed")
        return 77
    work = work_dir()
    lock = os.path.join(HERE, "package-lock.json")
    stamp = os.path.join(work, "package-lock.json")
    if os.path.exists(nacl_path()) and os.path.exists(stamp) and \
            open(stamp, "rb").read() == open(lock, "rb").read():
        return 0
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(work, name))
    r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=work,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if r.returncode != 0 or not os.path.exists(nacl_path()):
        print("skipped: npm ci could not install the page's packages (no npm registry?):\n"
              + r.stdout.decode(errors="replace")[-2000:])
        return 77
    return 0


class Handler(http.server.SimpleHTTPRequestHandler):
    FILES = {"/": "index.html", "/derp_page.js": "derp_page.js"}

    def do_GET(self):  # noqa: N802 - the base class's name
        path = urllib.parse.urlparse(self.path).path
        if path == "/nacl-fast.min.js":
            name = nacl_path()
        elif path in self.FILES:
            name = os.path.join(HERE, self.FILES[path])
        else:
            self.send_error(404)
            return
        body = open(name, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if name.endswith(".html")
                         else "text/javascript")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def run(args):
    chromium = find_chromium()
    if chromium is None:
        print("skipped: chromium is not installed")
        return 77
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    query = urllib.parse.urlencode({"url": args.url, "key": args.key, "peer": args.peer})
    page = "http://127.0.0.1:%d/?%s" % (server.server_address[1], query)
    profile = tempfile.mkdtemp(prefix="derpd-chromium-")
    argv = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            "--user-data-dir=" + profile, "--remote-debugging-port=0"]
    if args.spki:
        argv.append("--ignore-certificate-errors-spki-list=" + args.spki)
    if args.resolve:
        argv.append("--host-resolver-rules=MAP %s 127.0.0.1" % args.resolve)
    argv.append(page)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        port = None
        seen = []
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            seen.append(line)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
        if port is None:
            print("skipped: chromium did not start:\n" + "".join(seen[-20:]))
            return 77
        # Keep reading chromium's stderr so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
        deadline = time.monotonic() + 45
        title = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                targets = json.load(r)
            for t in targets:
                if t.get("type") == "page" and t.get("url", "").startswith(page[:30]):
                    title = t.get("title", "")
            if title == "ok":
                print("ok")
                return 0
            if title.startswith("fail"):
                print("page: " + title)
                return 1
            time.sleep(0.2)
        print("page still says %r after 45 s" % title)
        return 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--prepare":
        sys.exit(prepare())
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--key", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--spki")
    p.add_argument("--resolve")
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
