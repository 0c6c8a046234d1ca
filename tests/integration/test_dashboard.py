"""The admin dashboard in a real browser: Debian's headless Chromium, driven by playwright-core
(tests/dashboard/dashboard_test.js, installed by scripts/deps.sh with npm). The page must ask for
the admin token, list every server with its state, and drain one on a click (the API agrees); a
screenshot of it, under live traffic, is kept in tests/artifacts/dashboard.png."""
import json
import os
import shutil
import subprocess
import threading

import pytest

from harness import REPO, free_port, tcp_config, wait_until
from test_admin import get, servers_of

NODE = shutil.which("node")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCRIPT = REPO / "tests" / "dashboard" / "dashboard_test.js"
PLAYWRIGHT = REPO / "tests" / "dashboard" / "node_modules" / "playwright-core"
SCREENSHOT = REPO / "tests" / "artifacts" / "dashboard.png"

pytestmark = pytest.mark.skipif(
    not (NODE and os.access(CHROMIUM, os.X_OK) and PLAYWRIGHT.is_dir()),
    reason="needs node, %s and tests/dashboard/node_modules (scripts/deps.sh installs them)" % CHROMIUM)


def test_dashboard_lists_servers_and_drains_one(fulcrum, backend, tmp_path):
    s1, s2, a1, spare = backend("http", "s1"), backend("http", "s2"), backend("http", "a1"), backend("http", "spare")
    token = "dashboard-token-%d" % os.getpid()
    (tmp_path / "admin.token").write_text(token + "\n")
    web, admin = free_port(), free_port()
    health = {"check": "http", "path": "/health", "interval": "500ms", "timeout": "300ms", "rise": 1, "fall": 1}
    backends = {
        "app": {"balance": "least_time", "health": health,
                "servers": [{"name": "s1", "address": s1.address, "weight": 2},
                            {"name": "s2", "address": s2.address},
                            {"name": "s3", "address": "127.0.0.1:%d" % free_port()}]},
        "api": {"sticky": {"cookie": "FULCRUM_SERVER"},
                "health": {"check": "tcp", "interval": "500ms", "timeout": "300ms", "rise": 1, "fall": 1},
                "servers": [{"name": "a1", "address": a1.address},
                            {"name": "spare", "address": spare.address, "backup": True}]},
    }
    listeners = [{"name": "web", "bind": "127.0.0.1:%d" % web, "protocol": "http",
                  "routes": [{"match": {"path_prefix": "/api/"}, "backend": "api"}, {"backend": "app"}]}]
    fulcrum(tcp_config(backends, listeners, admin={"listen": "127.0.0.1:%d" % admin,
                                                   "token_file": str(tmp_path / "admin.token")}))
    wait_until(lambda: servers_of(admin, token=token)["s3"]["state"] == "down", 10, what="s3 down")

    # Live traffic while the page is open, so its charts and rates have something to show.
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            get(web, "/delay?ms=%d" % (5 + (i * 7) % 40))
            get(web, "/api/status?code=200")
            if i % 25 == 0:
                get(web, "/status?code=503")
            i += 1

    threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        p = subprocess.run([NODE, str(SCRIPT), "--url", "http://127.0.0.1:%d/" % admin, "--token", token,
                            "--servers", "app/s1,app/s2,app/s3,api/a1,api/spare", "--drain", "app/s2",
                            "--screenshot", str(SCREENSHOT)],
                           cwd=SCRIPT.parent, capture_output=True, text=True, timeout=150,
                           env=dict(os.environ, CHROMIUM=CHROMIUM))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    assert lines, "no result from the browser test\nstdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr[-4000:])
    result = json.loads(lines[-1])
    assert p.returncode == 0 and result["ok"], "%s\nstderr:\n%s" % (json.dumps(result, indent=1), p.stderr[-4000:])
    assert result["asked_for_token"] and result["wrong_token_refused"]
    assert "app/s3=down" in result["listed"] and "api/spare=standby" in result["listed"]
    assert result["api_state"] == "drain"
    assert servers_of(admin, token=token)["s2"]["state"] == "drain"
    with open(SCREENSHOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
