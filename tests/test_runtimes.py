"""The runtimes' state-file readers (procscope/runtimes.py) on real files:
a Docker config.v2.json and containerd task bundle captured from the
Docker daemon the Docker tests run, a Kubernetes containerd bundle and a
CRI-O userdata config written from those runtimes' documented formats on
top of the real bundle, and absent, partial and corrupt files. The files
are copied into a directory of root's first: state files are believed only
when root owns them and everything above them (tests/test_attacks.py has
the files and daemons that are not believed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from procscope.containers import Container
from procscope.runtimes import ContainerInfo, Runtimes

DATA = Path(__file__).parent / "data" / "runtimes"
DOCKER_ID = "994973b9169308bba28149f82c241acf1af5db59d073866c38b035f88582fc8e"
K8S_ID = "5b2c7c0e1f9d4a3b8e6f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
CRIO_ID = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"


ROOT = DATA


@pytest.fixture(autouse=True, scope="module")
def _root_owned_copy(tmp_path_factory):
    global ROOT
    ROOT = tmp_path_factory.mktemp("runtimes") / "data"
    shutil.copytree(DATA, ROOT)
    yield
    ROOT = DATA


def runtimes() -> Runtimes:
    return Runtimes(
        docker=[str(ROOT / "docker")], containerd=(str(ROOT / "containerd"),), storage=(str(ROOT / "storage"),)
    )


def test_docker_config_v2_gives_name_image_start_labels_and_the_pod_from_kubelet_labels():
    info = runtimes().describe(Container(DOCKER_ID, "docker"))
    assert (info.name, info.image, info.runtime, info.pid) == ("web-1", "procscope-busybox:1", "docker", 13614)
    assert info.image_id.startswith("sha256:") and info.started.startswith("2026-") and info.started.endswith("Z")
    assert info.labels["app"] == "shop"
    assert (info.pod.name, info.pod.namespace, info.pod.container, info.pod.labels) == (
        "shop-7d4",
        "prod",
        "web",
        {"app": "shop"},
    )


def test_a_containerd_kubernetes_bundle_gives_the_pod():
    info = runtimes().describe(Container(K8S_ID, "containerd"))
    assert (info.name, info.image) == ("api", "registry.example/payments/api:2.3.1")
    assert (info.pod.name, info.pod.namespace, info.pod.uid) == (
        "api-6c9f8d7b5-x2x4q",
        "payments",
        "7a1c2e3f-0b4d-4e5f-8a9b-0c1d2e3f4a5b",
    )


def test_dockers_own_containerd_bundle_says_nothing_more_than_the_id():
    assert runtimes().describe(Container(DOCKER_ID, "containerd")) is None


def test_a_crio_config_gives_the_pod_and_its_labels():
    info = runtimes().describe(Container(CRIO_ID, "cri-o"))
    assert (info.name, info.image, info.image_id) == ("worker", "quay.io/example/worker:1.0", "sha256:" + "ab" * 32)
    assert info.started == "2026-11-30T08:15:02.123456789Z"
    assert (info.pod.name, info.pod.namespace, info.pod.container, info.pod.labels) == (
        "queue-0",
        "batch",
        "worker",
        {"tier": "backend"},
    )


def test_absent_partial_and_corrupt_files_give_nothing_and_no_crash():
    r = runtimes()
    for cid in ("a" * 64, "b" * 64, "c" * 64, "d" * 64):  # cut in half, not JSON, wrong types, absent
        assert r.describe(Container(cid, "docker")) is None
        assert r.describe(Container(cid, "unknown")) is None
    assert r.describe(Container("web", "lxc")) is None  # an LXC name: nothing to look up by it


def test_what_is_recorded_reads_back_and_hostile_values_stay_text():
    info = runtimes().describe(Container(DOCKER_ID, "docker"))
    assert ContainerInfo.from_json(info.to_json()) == info
    odd = ContainerInfo.from_json({"id": "x", "name": ["not", "text"], "pid": "7", "labels": {"a": 1, "b": "[/]"},
                                   "pod": {"name": "p", "labels": None}})  # fmt: skip
    assert (odd.name, odd.pid, odd.labels, odd.pod.name, odd.pod.labels) == ("", 0, {"b": "[/]"}, "p", {})
    assert ContainerInfo.from_json("nonsense") is None


def test_the_pod_object_writes_the_start_as_protojson_does():
    """Go (Docker, containerd) trims trailing zeros of the nanoseconds; protojson writes 0, 3, 6 or 9 digits."""
    from procscope.export_parts import pod_object
    from procscope.runtimes import Pod

    info = ContainerInfo("ab" * 32, "docker", "web", "img", started="2026-12-02T03:50:49.44881877Z", pod=Pod("p", "ns"))
    assert pod_object(info, 1)["container"]["start_time"] == "2026-12-02T03:50:49.448818770Z"
    assert (
        "start_time"
        not in pod_object(ContainerInfo("ab" * 32, "cri-o", started="Tue, 1 Dec", pod=Pod("p", "ns")), 1)["container"]
    )
