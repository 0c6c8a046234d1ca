"""Every config shipped in examples/ (and the demo's) passes `fulcrum check`."""
import pathlib
import subprocess

import pytest

from harness import fulcrum_bin

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "keepalived" not in p.name)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_config_is_valid(path):
    r = subprocess.run([fulcrum_bin(), "check", "-c", str(path)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": ok:" in r.stdout


def test_demo_config_is_valid(tmp_path):
    out = subprocess.run([fulcrum_bin(), "demo", "--print-config"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(out.stdout)
    r = subprocess.run([fulcrum_bin(), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
