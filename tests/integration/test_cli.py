"""The command line as a user meets it: `version`, and `check` / `run` on good and bad configs.
A bad config must be reported as FILE:LINE:COL: message, pointing at the offending word, with
exit code 1 and no crash or stack trace."""
import re

import pytest

from harness import free_port, run_fulcrum

CRASH_SIGNS = ("terminate called", "what():", "Traceback", "Aborted", "Segmentation fault",
               "AddressSanitizer", "runtime error:", "core dumped", "\n#0 ", "\n#1 ")


def good_yaml():
    return (
        "workers: 2\n"
        "shutdown_grace: 5s\n"
        "listeners:\n"
        "  - name: t\n"
        "    bind: 127.0.0.1:%d\n"
        "    protocol: tcp\n"
        "    backend: b\n"
        "backends:\n"
        "  - name: b\n"
        "    balance: round_robin\n"
        "    connect_timeout: 250ms\n"
        "    servers:\n"
        "      - name: s1\n"
        "        address: 127.0.0.1:%d\n"
        "      - name: s2\n"
        "        address: 127.0.0.1:%d\n"
        "        weight: 3\n" % (free_port(), free_port(), free_port()))


def locate(text, needle, nth=1):
    """1-based (line, col) of the nth occurrence of `needle` in `text`."""
    i = -1
    for _ in range(nth):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def replace_once(text, old, new, nth=1):
    i = -1
    for _ in range(nth):
        i = text.index(old, i + 1)
    return text[:i] + new + text[i + len(old):]


def assert_no_crash(proc):
    out = proc.stdout + proc.stderr
    for sign in CRASH_SIGNS:
        assert sign not in out, "crash sign %r in output:\n%s" % (sign, out)


def error_lines(proc, path):
    """(line, col, message) of each `PATH:LINE:COL: message` line fulcrum printed."""
    pat = re.compile(r"^%s:(\d+):(\d+): (.+)$" % re.escape(str(path)))
    found = []
    for line in (proc.stderr + proc.stdout).splitlines():
        m = pat.match(line.strip())
        if m:
            found.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return found


def test_version():
    p = run_fulcrum("version")
    assert p.returncode == 0, p.stderr
    assert "fulcrum" in p.stdout
    assert_no_crash(p)


def test_check_good_config(tmp_path):
    cfg = tmp_path / "good.yaml"
    cfg.write_text(good_yaml())
    p = run_fulcrum("check", "-c", cfg)
    assert p.returncode == 0, "stdout:\n%s\nstderr:\n%s" % (p.stdout, p.stderr)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, "expected a one-line summary on stdout, got:\n%s" % p.stdout
    assert_no_crash(p)


# Each case: (id, edit of the good config, the word the error must point at, its occurrence,
# words one of which the message should contain).
BAD_CASES = [
    ("unknown_key",
     lambda t: t.replace("    backend: b\n", "    backend: b\n    colour: blue\n"),
     "colour", 1, ("colour", "unknown")),
    ("bad_duration",
     lambda t: t.replace("shutdown_grace: 5s", "shutdown_grace: 2x"),
     "2x", 1, ("2x", "duration")),
    ("bad_duration_nested",
     lambda t: t.replace("connect_timeout: 250ms", "connect_timeout: 2x"),
     "2x", 1, ("2x", "duration")),
    ("unknown_backend",
     lambda t: t.replace("    backend: b\n", "    backend: nope\n"),
     "nope", 1, ("nope", "backend")),
    ("duplicate_server_name",
     lambda t: t.replace("      - name: s2\n", "      - name: s1\n"),
     "s1", 2, ("s1", "duplicate")),
    ("duplicate_backend_name",
     lambda t: t + "  - name: b\n    servers:\n      - name: x\n        address: 127.0.0.1:1\n",
     "name: b", 2, ("b", "duplicate")),
    ("bad_server_address",
     lambda t: re.sub(r"(address: 127\.0\.0\.1:)\d+", r"\g<1>70000", t, count=1),
     "127.0.0.1:70000", 1, ("address", "70000", "port")),
    ("bad_bind_address",
     lambda t: re.sub(r"bind: 127\.0\.0\.1:\d+", "bind: 127.0.0.1:http-ish", t),
     "127.0.0.1:http-ish", 1, ("address", "http-ish", "bind", "port")),
    ("bad_protocol",
     lambda t: t.replace("protocol: tcp", "protocol: gopher"),
     "gopher", 1, ("gopher", "protocol")),
    ("bad_balance",
     lambda t: t.replace("balance: round_robin", "balance: roulette"),
     "roulette", 1, ("roulette", "balance")),
]


@pytest.mark.parametrize("edit,word,nth,keywords", [c[1:] for c in BAD_CASES],
                         ids=[c[0] for c in BAD_CASES])
@pytest.mark.parametrize("command", ["check", "run"])
def test_bad_config_points_at_the_word(tmp_path, command, edit, word, nth, keywords):
    text = edit(good_yaml())
    assert text != good_yaml() or word not in good_yaml()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    line, col = locate(text, word, nth)
    if word.startswith("name: "):  # points at the value of `name:`, not at the key
        col += len("name: ")
    p = run_fulcrum(command, "-c", cfg, timeout=10)
    out = "stdout:\n%s\nstderr:\n%s\nconfig:\n%s" % (p.stdout, p.stderr, text)
    assert p.returncode == 1, "exit code %s\n%s" % (p.returncode, out)
    assert_no_crash(p)
    errors = error_lines(p, cfg)
    assert errors, "no '%s:LINE:COL: message' line\n%s" % (cfg, out)
    got_line, got_col, msg = errors[0]
    assert (got_line, got_col) == (line, col), "expected %d:%d (%r)\n%s" % (line, col, word, out)
    assert any(k.lower() in msg.lower() for k in keywords), \
        "message %r mentions none of %s" % (msg, keywords)


def test_yaml_syntax_error_has_position(tmp_path):
    text = good_yaml().replace("    protocol: tcp\n", "    protocol: [tcp\n")
    cfg = tmp_path / "syntax.yaml"
    cfg.write_text(text)
    p = run_fulcrum("check", "-c", cfg)
    assert p.returncode == 1, p.stdout + p.stderr
    assert_no_crash(p)
    errors = error_lines(p, cfg)
    assert errors, "no '%s:LINE:COL: message' line:\n%s%s" % (cfg, p.stdout, p.stderr)
    assert 1 <= errors[0][0] <= text.count("\n") + 1


def test_missing_config_file(tmp_path):
    cfg = tmp_path / "absent.yaml"
    p = run_fulcrum("check", "-c", cfg)
    assert p.returncode == 1, p.stdout + p.stderr
    assert_no_crash(p)
    assert str(cfg) in p.stderr + p.stdout


def test_unknown_command_fails():
    p = run_fulcrum("frobnicate")
    assert p.returncode != 0
    assert_no_crash(p)


@pytest.mark.parametrize("setting", ["rate: 10/s", "max_conns_per_client: 5", "deny: [ 192.0.2.0/24 ]",
                                     "allow: [ 127.0.0.0/8 ]"])
def test_run_refuses_protection_it_does_not_enforce_yet(tmp_path, setting):
    """A limit written in the config but not enforced would be worse than none: http, https,
    forward_proxy and tcp listeners enforce protect, udp listeners do not yet."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text("listeners:\n  - name: game\n    bind: 127.0.0.1:%d\n    protocol: udp\n    protect: { %s }\n"
                   "    backend: b\nbackends:\n  - { name: b, servers: [ { name: s1, "
                   "address: '127.0.0.1:9' } ] }\n" % (free_port(), setting))
    for cmd in ("check", "run"):  # `check` says what `run` would refuse
        p = run_fulcrum(cmd, "-c", str(cfg), timeout=10)
        assert p.returncode == 1
        assert re.search(r"p\.yaml:5:\d+: listener 'game': protect\.\w+ is not enforced on udp", p.stderr), p.stderr


def test_check_refuses_a_protect_rule_regex_that_does_not_compile(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("listeners:\n  - name: web\n    bind: 127.0.0.1:%d\n    protect:\n      rules:\n"
                   "        - { path_regex: '(' }\n    routes: [ { backend: b } ]\nbackends:\n"
                   "  - { name: b, servers: [ { name: s1, address: '127.0.0.1:9' } ] }\n" % free_port())
    p = run_fulcrum("check", "-c", str(cfg))
    assert p.returncode == 1
    assert re.search(r"r\.yaml:6:11: listener 'web': bad regex '\(' in protect rule", p.stdout + p.stderr), \
        p.stdout + p.stderr
