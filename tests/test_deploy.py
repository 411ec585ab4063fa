"""The agent's deployment files (deploy/): a systemd unit that systemd
itself accepts, and a DaemonSet valid against Kubernetes' schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

DEPLOY = REPO / "deploy"


def test_the_systemd_unit_is_one_systemd_accepts(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (DEPLOY / "procscope-agent.service").read_text()
    assert "ExecStart=/usr/local/bin/procscope agent --address unix:///run/procscope/procscope.sock" in unit
    assert "RuntimeDirectoryMode=0700" in unit  # the agent refuses a socket directory others can write to
    # Verified with ExecStart at this checkout's command (verify checks that it exists and runs).
    here = tmp_path / "procscope-agent.service"
    here.write_text(unit.replace("/usr/local/bin/procscope", str(Path(sys.executable).parent / "procscope")))
    done = subprocess.run(["systemd-analyze", "verify", str(here)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.replace("Type=exec", "Type=nonsense").replace("/usr/local/bin", "/nonexistent"))
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, timeout=60).returncode != 0


def test_the_daemonset_is_valid_against_kubernetes_schema(tmp_path):
    kubernetes_validate = Path(sys.executable).parent / "kubernetes-validate"
    manifest = DEPLOY / "procscope-agent-daemonset.yaml"
    done = subprocess.run([str(kubernetes_validate), "--strict", str(manifest)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and "passed for resource daemonset/procscope-agent" in done.stdout + done.stderr
    text = manifest.read_text()
    assert 'command: ["procscope", "agent", "--address", "unix:///var/run/procscope/procscope.sock"]' in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("hostPID: true", "hostPID: yes-please"))
    refused = subprocess.run([str(kubernetes_validate), "--strict", str(bad)], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert refused.returncode != 0 and "hostPID" in refused.stdout + refused.stderr
