"""`--metrics`: Prometheus text at /metrics, parsed with prometheus-client's
own parser, against what `procscope events` wrote over the same execs
(a forced ring-buffer overflow included), and scraped by a real Prometheus
server that answers a query through its HTTP API."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import REPO, bpf_unavailable, unique_copy

BURST = 300


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value}"""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def start_events(args: list[str]) -> tuple[subprocess.Popen, str]:
    """`procscope events ARGS --metrics 127.0.0.1:0`, once collecting: (process, metrics URL)."""
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    proc = subprocess.Popen([sys.executable, "-m", "procscope", "events", *args, "--metrics", "127.0.0.1:0"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    url, said = None, []
    while (line := proc.stderr.readline()) and "collecting" not in line:
        said.append(line)
        if m := re.search(r"metrics at (http://\S+)", line):
            url = m[1]
    if "collecting" not in line:
        bpf_unavailable("".join(said) + proc.stderr.read())
    assert url is not None, said
    return proc, url


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(30) == 0, err
    return err


def settled(url: str) -> dict:
    """A scrape once the counts have stopped moving (the storm's last records read)."""
    before = scrape(url)
    for _ in range(20):
        time.sleep(1.0)
        now = scrape(url)
        if (
            now[("procscope_events_total", (("type", "PROCESS_EXEC"),))]
            == before[("procscope_events_total", (("type", "PROCESS_EXEC"),))]
        ):
            return now
        before = now
    return before


@pytest.mark.bpf
def test_metrics_match_what_events_wrote_and_count_the_overflow(tmp_path, scratch):
    binary = unique_copy("/bin/true", scratch)
    out = tmp_path / "events.json"
    # One page of ring buffer and a reader that stalls (stopped, as on a machine too busy to run
    # it): a burst overflows it (EAGAIN on EXECVE), and the rest is still counted.
    proc, url = start_events(["-o", str(out), "--ring-size", "4096"])
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for _ in range(BURST):
                pid = os.posix_spawn(binary, [binary], {})
                os.waitpid(pid, 0)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        m = settled(url)
    finally:
        err = stop(proc)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    execs = [e for e in lines if "process_exec" in e]
    exits = [e for e in lines if "process_exit" in e]
    mine = sum(1 for e in execs if e["process_exec"]["process"]["binary"] == binary)
    eagain = m[("procscope_bpf_missed_events_total", (("error", "EAGAIN"), ("msg_op", "EXECVE")))]
    assert eagain > 0, "a one-page ring must overflow during the burst"
    assert mine + eagain >= BURST  # every exec of the burst: written, or counted as missed (others may miss too)
    assert m[("procscope_events_total", (("type", "PROCESS_EXEC"),))] == len(execs)
    assert m[("procscope_events_total", (("type", "PROCESS_EXIT"),))] == len(exits)
    # The summary `procscope events` prints says the same.
    assert f"kernel EAGAIN on EXECVE {int(eagain)}" in err
    assert m[("procscope_userspace_dropped_events_total", ())] == 0
    assert m[("procscope_decode_errors_total", ())] == 0
    assert m[("procscope_processes", ())] > 1
    assert m[("procscope_process_cpu_seconds_total", ())] > 0  # procscope's own
    assert m[("procscope_process_resident_memory_bytes", ())] > 10 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.bpf
def test_a_real_prometheus_scrapes_procscope(tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus is missing: scripts/setup installs it"
    proc, url = start_events(["-o", str(tmp_path / "events.json")])
    target = urllib.parse.urlsplit(url).netloc
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: procscope, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    server = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        query = urllib.parse.urlencode({"query": 'procscope_events_total{type="PROCESS_EXEC"}'})
        result = []
        for _ in range(60):
            time.sleep(1.0)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{query}", timeout=5) as r:
                    answer = json.load(r)
            except OSError:
                continue  # not listening yet
            result = answer["data"]["result"]
            if result:
                break
        assert result, "Prometheus never got procscope_events_total from procscope"
        assert result[0]["metric"]["job"] == "procscope" and float(result[0]["value"][1]) >= 0
    finally:
        server.terminate()
        server.wait(30)
        stop(proc)


def test_bad_metrics_addresses_are_refused_in_one_line(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "procscope", "events", "--metrics", "2112"], cwd=REPO,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "bad address '2112': give HOST:PORT" in bad.stderr
    replay = subprocess.run([sys.executable, "-m", "procscope", "events", "--replay", str(REPO / "tests/data/demo.jsonl"),
                             "--metrics", "127.0.0.1:0"], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert replay.returncode == 2 and "--metrics is for live collection, not --replay" in replay.stderr


@pytest.mark.bpf
def test_a_port_in_use_is_refused_in_one_line():
    if os.geteuid() != 0:
        bpf_unavailable("tests are not running as root")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "procscope", "events", "--metrics", f"127.0.0.1:{port}"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert f"--metrics 127.0.0.1:{port}: cannot listen there" in r.stderr and "Traceback" not in r.stderr
