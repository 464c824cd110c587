"""The deployment recipe's nginx configuration (deploy/nginx.conf), run as written in front of two stand-in replicas on
loopback ports: each browser stays on one replica (its routing cookie), new browsers spread over both, WebSocket
upgrades pass, and when a replica dies its browsers move to the other."""

import gzip
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCRIPT = b"".join(b"function f%d(a, b) { return a + b * %d; }\n" % (i, i) for i in range(2000))


class _Replica(http.server.BaseHTTPRequestHandler):
    """Answers with its own port and the Upgrade header it received: which replica served a request."""

    def do_GET(self):
        body = f"{self.server.server_address[1]} {self.headers.get('Upgrade', '')} {self.headers.get('Connection', '')}".encode()
        kind = "text/plain"
        if self.path.endswith(".js"):  # one of Streamlit's scripts, which it sends uncompressed
            body, kind = SCRIPT, "application/javascript"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _replica():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replica)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _get(port: int, cookie: str | None = None, headers: dict | None = None) -> tuple[str, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})})
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    return body, r.getheader("Set-Cookie")


@pytest.fixture
def proxy(tmp_path):
    """(nginx's port, the two replicas) with deploy/nginx.conf as the documented http-level configuration."""
    if not os.path.exists(NGINX):
        if os.environ.get("CI"):
            pytest.fail("nginx is missing; CI must install Debian's nginx-light package")
        pytest.skip("nginx is missing")
    replicas = [_replica(), _replica()]
    port = _free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("127.0.0.1:8501", f"127.0.0.1:{replicas[0].server_address[1]}")
    site = site.replace("127.0.0.1:8502", f"127.0.0.1:{replicas[1].server_address[1]}")
    assert site.count(f"127.0.0.1:{replicas[0].server_address[1]}") == 1 and f"listen 127.0.0.1:{port};" in site
    (tmp_path / "dlviz.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"""
        worker_processes 1;
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi;
            include {tmp_path}/dlviz.conf;
        }}
        """
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.1)
        yield port, replicas
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for r in replicas:
            r.shutdown()


def test_a_browser_stays_on_one_replica_new_ones_spread_and_a_dead_replicas_browsers_move(proxy):
    port, replicas = proxy
    ports = {str(r.server_address[1]) for r in replicas}
    cookies = []
    served = set()
    for _ in range(24):  # 24 new browsers: both replicas get some (a chance of 2 × 2⁻²⁴ that one gets none)
        body, set_cookie = _get(port)
        assert set_cookie and set_cookie.startswith("dlviz_route="), set_cookie
        cookie = set_cookie.split(";")[0]
        cookies.append((cookie, body.split()[0]))
        served.add(body.split()[0])
    assert served == ports
    for cookie, first in cookies[:8]:  # a browser that comes back with its cookie meets the same replica
        for _ in range(3):
            body, set_cookie = _get(port, cookie)
            assert body.split()[0] == first
            assert set_cookie.split(";")[0] == cookie  # and keeps its key

    # the WebSocket handshake reaches the replica with its Upgrade header
    body, _ = _get(port, cookies[0][0], {"Upgrade": "websocket", "Connection": "Upgrade"})
    assert re.fullmatch(r"\d+ websocket upgrade", body.strip()), body

    # Streamlit's scripts go out compressed (its chart's script alone is 4.7 MB), to a browser that takes gzip
    for encoding in ("gzip", None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/static/js/PlotlyChart.x.js", headers={"Cookie": cookies[0][0], **({"Accept-Encoding": encoding} if encoding else {})})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        assert r.getheader("Content-Encoding") == encoding
        assert (gzip.decompress(data) if encoding else data) == SCRIPT
        if encoding:
            assert len(data) < len(SCRIPT) / 3

    # a replica dies: its browsers are served by the other one
    dead = replicas[0]
    dead_port = str(dead.server_address[1])
    dead.shutdown()
    dead.server_close()
    for cookie, first in cookies:
        body, _ = _get(port, cookie)
        assert body.split()[0] != dead_port
