"""The layout: one import root, the layers kept apart, the wheel holding
procscope/ only (the import contracts themselves are checked by
lint-imports, which the test command runs)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import procscope

from .conftest import bpf_unavailable

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["probes", "procscope", "tui", "themes", "tests", "bench"]


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout


def test_the_model_imports_no_ui_and_no_bcc():
    loaded = json.loads(_python(
        "import json, sys\n"
        "import procscope.cache, procscope.query, procscope.export, procscope.replay, procscope.snapshot, procscope.cli\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    ))  # fmt: skip
    assert not {"textual", "rich", "bcc"} & set(loaded)


def test_the_monitor_and_the_command_line_load_no_grpc():
    """grpc and protobuf load for the agent and --connect only (40 ms of the monitor's start)."""
    loaded = json.loads(_python(
        "import json, sys\n"
        "import procscope.cli, procscope.commands, procscope.tui.main\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    ))  # fmt: skip
    assert not {"grpc", "google"} & set(loaded)
    connecting = json.loads(_python(
        "import json, sys\n"
        "import procscope.agent_client\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    ))  # fmt: skip
    assert "grpc" not in connecting  # --connect reads a stream by h2 (agent_stream): grpcio's cost a message


def test_nothing_imports_the_bare_folder_names():
    bare = []
    files = [p for d in SOURCES for p in (REPO / d).rglob("*.py") if "procscope/probes" not in str(p.relative_to(REPO))]
    files += [REPO / "scripts" / "screenshots", REPO / "scripts" / "record-demo"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bare += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ("probes", "tui", "themes")]
    assert bare == []


def test_python_dash_m_procscope_is_the_command():
    out = subprocess.run([sys.executable, "-m", "procscope", "--help"], cwd="/", capture_output=True, text=True)
    assert out.returncode == 0 and "usage: procscope" in out.stdout and "events" in out.stdout


def test_the_wheel_holds_procscope_only(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                    str(REPO)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("procscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"procscope", wheel.name.split("-py3")[0] + ".dist-info"}
    for path in ("procscope/probes/bpf/process.c", "procscope/probes/bpf/msg.h", "procscope/tui/app.tcss",
                 "procscope/themes/dark.tcss", "procscope/probes/collector.py", "procscope/tui/app.py"):  # fmt: skip
        assert path in names


def _wheel(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(directory), str(REPO)],
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = directory.glob("procscope-*.whl")
    return wheel


@pytest.mark.bpf
def test_the_wheel_installs_into_a_system_site_packages_venv_and_runs(tmp_path):
    """As pipx install --system-site-packages would: the distro's bcc found
    directly; `procscope --version` and a short `procscope events` work."""
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([venv / "bin/pip", "install", "-q", "--disable-pip-version-check", "-c", REPO / "constraints.txt",
                    wheel], check=True, capture_output=True)  # fmt: skip
    version = subprocess.run([venv / "bin/procscope", "--version"], cwd="/", capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"procscope {procscope.__version__}"
    found = subprocess.run([venv / "bin/python", "-c", "import bcc, procscope; print(bcc.__file__, procscope.__file__)"],
                           cwd="/", capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert found.startswith("/usr/lib/python3/dist-packages/bcc/") and str(venv) in found.split()[1]
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    events = subprocess.run([venv / "bin/procscope", "events", "--duration", "3", "--include", "procfs"], cwd="/",
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert events.returncode == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert any(e.get("process_exec", {}).get("process", {}).get("pid") == 1 for e in lines)  # the /proc scan's init


def test_the_wheel_finds_the_distros_bcc_from_a_plain_venv(tmp_path):
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin/pip", "install", "-q", "--disable-pip-version-check", "--no-deps", wheel],
                   check=True, capture_output=True)  # fmt: skip
    code = "from procscope.probes.bcc_import import import_bcc; print(import_bcc().__file__)"
    out = subprocess.run([venv / "bin/python", "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout
    assert out.startswith("/usr/lib/python3/dist-packages/bcc/")


@pytest.mark.parametrize("folder", ["probes", "tui", "themes"])
def test_a_folder_imported_by_its_bare_name_is_refused_not_loaded_twice(folder):
    """From the checkout's root `import probes` would be a second copy of the
    modules procscope.probes already is: it fails, saying what to import."""
    done = subprocess.run([sys.executable, "-c", f"import procscope.{folder}; import {folder}"], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1 and f"import procscope.{folder}, not {folder}" in done.stderr
    assert subprocess.run([sys.executable, "-c", f"import procscope.{folder}"], cwd=REPO).returncode == 0


def test_no_module_is_over_450_lines():
    """A module past this has grown past its one job: split it by its jobs."""
    modules = [
        *(REPO / "procscope").glob("*.py"),
        *(p for d in ("probes", "tui", "themes") for p in (REPO / d).rglob("*.py")),
    ]
    lengths = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in modules}
    assert len(lengths) > 60 and "procscope/cache.py" in lengths and "tui/app.py" in lengths
    assert {name: n for name, n in lengths.items() if n > 450} == {}
