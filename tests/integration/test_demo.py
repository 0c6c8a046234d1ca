"""`fulcrum demo` as a newcomer runs it: the three apps behind the balancer, the session problem
of plain round robin and the sticky cookie that solves it, the static site, the DNS balancer, and
the dashboard's "Make it fail" button. The demo listens on its documented fixed ports
(8080, 8053, 9090, 9101-9103, 9201-9203); the test skips if any is taken."""
import http.client
import os
import shutil
import signal
import socket
import subprocess

import pytest

from harness import REPO, fulcrum_bin, wait_until

PORTS = [8080, 9090, 9101, 9102, 9103, 9201, 9202, 9203]
NODE = shutil.which("node")
PLAYWRIGHT = REPO / "tests" / "dashboard" / "node_modules" / "playwright-core"
SCREENSHOT = REPO / "tests" / "artifacts" / "demo-dashboard.png"


def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def request(method, path, cookie=None):
    c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
    c.request(method, path, headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r, body


def cookies_of(r):
    return "; ".join(v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie")


@pytest.fixture
def demo(tmp_path):
    taken = [p for p in PORTS if not port_free(p)]
    if taken:
        pytest.skip("the demo's ports are in use: %s" % taken)
    err = open(tmp_path / "demo.stderr", "wb")
    proc = subprocess.Popen([fulcrum_bin(), "demo"], stdout=subprocess.PIPE, stderr=err,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def up():
            try:
                return request("GET", "/")[0].status == 200
            except OSError:
                return False
        wait_until(up, 15, interval=0.1, what="the demo balancer answering with a server up")
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(5)
            assert code == 0, (tmp_path / "demo.stderr").read_text()
        err.close()


def test_demo_shows_the_session_problem_and_its_fixes(demo):
    r, body = request("GET", "/")
    assert body.startswith("hello from app")
    # Plain round robin: the login lives on one app, the next requests reach the others.
    r, body = request("POST", "/rr/login?user=ada")
    jar = cookies_of(r)
    # Each worker keeps its own rotation, so which app answers is not fixed; over six requests at
    # least one reaches an app that does not know the session ((1/3)^6 odds otherwise).
    statuses = [request("GET", "/rr/profile", jar)[0].status for _ in range(6)]
    assert 401 in statuses
    # The sticky cookie: every profile request reaches the app that holds the session.
    r, body = request("POST", "/login?user=ada")
    jar = cookies_of(r)
    assert "FULCRUM_SERVER=" in jar and "demo_session=" in jar
    bodies = {request("GET", "/profile", jar)[1] for _ in range(5)}
    assert len(bodies) == 1 and next(iter(bodies)).startswith("profile of ada")
    # Consistent hashing on the user: the same.
    r, _ = request("POST", "/hash/login?user=ada")
    jar = cookies_of(r)
    assert all(request("GET", "/hash/profile?user=ada", jar)[0].status == 200 for _ in range(5))
    # The static site.
    r, body = request("GET", "/site/")
    assert r.status == 200 and "served by fulcrum" in body


@pytest.mark.skipif(not shutil.which("dig"), reason="needs dig (dnsutils)")
def test_demo_dns_balancer_answers(demo):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", "8053", "app.demo", "+short", "+time=2", "+tries=2"],
                         capture_output=True, text=True, timeout=10).stdout.split()
    assert out and all(a == "127.0.0.1" for a in out)


@pytest.mark.skipif(not (NODE and PLAYWRIGHT.is_dir() and os.access("/usr/bin/chromium", os.X_OK)),
                    reason="needs node, chromium and tests/dashboard/node_modules (scripts/deps.sh)")
def test_dashboard_makes_a_demo_app_fail_and_recover(demo):
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([NODE, str(REPO / "tests" / "dashboard" / "demo_test.js"), "http://127.0.0.1:9090/",
                        str(SCREENSHOT)], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
