"""Health checks of backends with `tls:` (HAProxy's check-ssl): `check: http` speaks HTTPS to the
server with the backend's verify/sni/ca, so a TLS server that answers 200 stays up, while a bad
status, a server that stops speaking TLS, or a certificate the `ca` did not sign takes it down,
with the reason in /api/v1/backends' last_check. Certificates are made at test time (the
make_cert helper of test_https.py); every wait is bounded."""
import http.client
import json

from harness import free_port, tcp_config, wait_until
from test_https import make_cert

HEALTH = {"check": "http", "path": "/health", "interval": "500ms", "timeout": "500ms", "rise": 1, "fall": 1}


def servers(admin):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
    try:
        c.request("GET", "/api/v1/backends")
        r = c.getresponse()
        assert r.status == 200
        doc = json.loads(r.read())
    finally:
        c.close()
    return {b["name"]: b["servers"][0] for b in doc["backends"]}


def start(fulcrum, backends):
    web, admin = free_port(), free_port()
    listeners = [{"name": "web", "bind": "127.0.0.1:%d" % web, "protocol": "http",
                  "routes": [{"match": {"path_prefix": "/"}, "backend": next(iter(backends))}]}]
    fulcrum(tcp_config(backends, listeners, workers=1, shutdown_grace="3s",
                       admin={"listen": "127.0.0.1:%d" % admin}))
    return admin


def one(address, tls, **health):
    return {"health": dict(HEALTH, **health), "tls": tls, "servers": [{"name": "s", "address": address}]}


def test_https_check_passes_and_fails_by_status_and_verification(fulcrum, backend, tmp_path):
    ca, key = make_cert(str(tmp_path), "a", ["a.test"])
    other, _ = make_cert(str(tmp_path), "other", ["a.test"])  # names the server, signed by nobody we know
    b = backend("http", "secure", extra_args=["--tls-cert", ca, "--tls-key", key])
    admin = start(fulcrum, {
        "good": one(b.address, {"sni": "a.test", "ca": ca}),
        "noverify": one(b.address, {"verify": False}),
        "badstatus": one(b.address, {"sni": "a.test", "ca": ca}, path="/status?code=503"),
        "wrongca": one(b.address, {"sni": "a.test", "ca": other}),
        "wrongname": one(b.address, {"sni": "b.test", "ca": ca}),
    })
    want = {"good": "up", "noverify": "up", "badstatus": "down", "wrongca": "down", "wrongname": "down"}
    s = wait_until(lambda: (lambda s: s if {n: x["state"] for n, x in s.items()} == want else None)(servers(admin)),
                   10, what="good and noverify up, the others down")
    assert s["good"]["last_check"]["result"] == "pass" and s["good"]["last_check"]["reason"] == "HTTP 200"
    assert s["badstatus"]["last_check"]["code"] == "L7STS"
    assert s["badstatus"]["last_check"]["reason"] == "HTTP 503"
    for name in ("wrongca", "wrongname"):
        lc = s[name]["last_check"]
        assert lc["code"] == "L6RSP", lc
        assert lc["reason"].startswith("tls handshake: certificate verify failed"), lc
    assert "self-signed" in s["wrongca"]["last_check"]["reason"] or \
        "issuer" in s["wrongca"]["last_check"]["reason"], s["wrongca"]["last_check"]
    assert "hostname mismatch" in s["wrongname"]["last_check"]["reason"], s["wrongname"]["last_check"]


def test_https_check_goes_down_when_the_server_stops_speaking_tls(fulcrum, backend, tmp_path):
    ca, key = make_cert(str(tmp_path), "a", ["a.test"])
    b = backend("http", "secure", extra_args=["--tls-cert", ca, "--tls-key", key])
    admin = start(fulcrum, {"app": one(b.address, {"sni": "a.test", "ca": ca})})
    wait_until(lambda: servers(admin)["app"]["state"] == "up", 10, what="the TLS server up")
    # The same port now answers plain HTTP: the handshake fails.
    port = b.port
    b.kill()
    plain = backend("http", "plain", port=port)
    lc = wait_until(lambda: (lambda s: s["last_check"] if s["state"] == "down" else None)(servers(admin)["app"]),
                    10, what="the server down")
    assert lc["code"] == "L6RSP" and lc["reason"].startswith("tls handshake: "), lc
    # TLS again: back up.
    plain.kill()
    backend("http", "secure", port=port, extra_args=["--tls-cert", ca, "--tls-key", key])
    wait_until(lambda: servers(admin)["app"]["state"] == "up", 10, what="the TLS server up again")
