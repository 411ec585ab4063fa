"""Container ids from cgroup paths and names: golden real-world layouts."""

import pytest

from procscope.containers import Container, from_cgroup_name, from_cgroup_path

DOCKER = "bac3df2bc0890cf4c87482f1511df3e1fb3ec677214d58658454aa1d06a7e118"
CONTAINERD = "40623edf02420564b2c4f4ad7c3f773ebd3124b94c5e6d70ee6e8c4842bb7d58"
CRIO = "a2c1ba0be9ab8641f4dd5a5cfe94e6db47afc4069572e5b5b28c47af8ff1e5e5"
PODMAN = "321d106f7e787319b616505a81abff1c8b5d8be536a4d00b9d5c1df8d0b5d9c3"
PODMAN_ROOTLESS = "b568d55f5a556974c8c8e2258760a49a877aceeca97bf1a795070652c14b220a"
BARE = "c4d1e529328415813cc53b4c7a43e9fd257152c6fbcf89ec2d49fb8e079ffca5"
POD_UID = "612eb22f-e00a-4cb3-ad31-f93261181672"
POD_UID_SYSTEMD = POD_UID.replace("-", "_")  # the systemd driver's slice names

GOLDEN = [
    # docker, cgroupfs driver (v1 memory controller, and v2)
    (f"/docker/{DOCKER}", DOCKER, "docker"),
    (f"12:memory:/docker/{DOCKER}", DOCKER, "docker"),
    (f"0::/docker/{DOCKER}", DOCKER, "docker"),
    # docker, systemd driver (v2 and v1), rootful and rootless
    (f"/system.slice/docker-{DOCKER}.scope", DOCKER, "docker"),
    (f"1:name=systemd:/system.slice/docker-{DOCKER}.scope", DOCKER, "docker"),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{DOCKER}.scope", DOCKER, "docker"),
    # a systemd running inside the container makes its own cgroups below it
    (f"/system.slice/docker-{DOCKER}.scope/init.scope", DOCKER, "docker"),
    # docker in docker: the innermost container
    (f"/docker/{BARE}/docker/{DOCKER}", DOCKER, "docker"),
    # containerd under kubernetes, v1 cgroupfs: burstable, besteffort, guaranteed
    (f"/kubepods/burstable/pod{POD_UID}/{CONTAINERD}", CONTAINERD, "containerd"),
    (f"4:memory:/kubepods/besteffort/pod{POD_UID}/{CONTAINERD}", CONTAINERD, "containerd"),
    (f"/kubepods/pod{POD_UID}/{CONTAINERD}", CONTAINERD, "containerd"),
    # containerd under kubernetes, v2 systemd slices
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice/"
        f"cri-containerd-{CONTAINERD}.scope",
        CONTAINERD,
        "containerd",
    ),
    (
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_SYSTEMD}.slice/"
        f"cri-containerd-{CONTAINERD}.scope",
        CONTAINERD,
        "containerd",
    ),
    # containerd with systemd_cgroup on v1: "<slice>:cri-containerd:<id>"
    (
        f"/system.slice/containerd.service/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice:cri-containerd:{CONTAINERD}",
        CONTAINERD,
        "containerd",
    ),
    # CRI-O, systemd driver (v2) and cgroupfs driver (v1)
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice/crio-{CRIO}.scope",
        CRIO,
        "cri-o",
    ),
    (f"/kubepods/burstable/pod{POD_UID}/crio-{CRIO}", CRIO, "cri-o"),
    # podman, rootful (the "container" leaf sends us to the parent) and rootless
    (f"/machine.slice/libpod-{PODMAN}.scope/container", PODMAN, "podman"),
    (f"/machine.slice/libpod-{PODMAN}.scope", PODMAN, "podman"),
    (f"0::/machine.slice/libpod-{PODMAN}.scope/container", PODMAN, "podman"),
    (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{PODMAN_ROOTLESS}.scope",
        PODMAN_ROOTLESS,
        "podman",
    ),
    (f"/libpod_parent/libpod-{PODMAN}", PODMAN, "podman"),  # cgroupfs driver
    # LXC: v2 payload (LXC 4+, LXD, Incus), older layouts, v1 /lxc/<name>
    ("/lxc.payload.web01", "web01", "lxc"),
    ("/lxc.payload.web01/system.slice/nginx.service", "web01", "lxc"),
    ("/lxc.payload/web01", "web01", "lxc"),
    ("5:memory:/lxc/build-box", "build-box", "lxc"),
    # systemd-nspawn (instance names are unit-escaped)
    ("/machine.slice/systemd-nspawn@debian.service", "debian", "systemd-nspawn"),
    ("/machine.slice/systemd-nspawn@debian.service/payload/system.slice/cron.service", "debian", "systemd-nspawn"),
    ("/machine.slice/systemd-nspawn@arch\\x2dtest.service", "arch-test", "systemd-nspawn"),
    # a long tail Tetragon accepts but whose runtime we do not know
    (f"/ecs/{POD_UID}/{BARE}", BARE, "unknown"),
]


@pytest.mark.parametrize(("path", "cid", "runtime"), GOLDEN)
def test_golden_paths(path, cid, runtime):
    c = from_cgroup_path(path)
    assert c == Container(cid, runtime)
    assert c.short_id == cid[:12]
    assert c.tetragon_id == cid[:31]


def test_short_and_tetragon_ids():
    c = from_cgroup_path(f"/system.slice/docker-{DOCKER}.scope")
    assert c.short_id == "bac3df2bc089"
    assert c.tetragon_id == "bac3df2bc0890cf4c87482f1511df3e"
    assert from_cgroup_path("/lxc.payload.web01").tetragon_id == "web01"


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "0::/",
        "/init.scope",
        "/user.slice/user-1000.slice/session-2.scope",
        "/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.gnome.Terminal.slice/vte-spawn-"
        "7a3c1b2e-55d0-4c1e-9a2b-1f0e3d4c5b6a.scope",
        "/system.slice/sshd.service",
        "/system.slice/docker.service",
        "/system.slice/containerd.service",
        "12:memory:/system.slice/sshd.service",
        "/process_api/92ab300b44b8554810cdb49c716168be",  # 32 hex: a sandbox name, too short
        f"/kubepods/burstable/pod{POD_UID}",  # the pod, not a container
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{POD_UID_SYSTEMD}.slice",
        # runtime monitors, not containers
        f"/system.slice/crio-conmon-{CRIO}.scope",
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID_SYSTEMD}.slice/"
        f"crio-conmon-{CRIO}.scope",
        f"/machine.slice/libpod-conmon-{PODMAN}.scope",
        "/lxc.monitor.web01",
        "/lxc.monitor/web01",
        "/machine.slice/systemd-nspawn@debian.service/supervisor",
    ],
)
def test_host_and_monitor_paths(path):
    assert from_cgroup_path(path) is None


@pytest.mark.parametrize(
    ("name", "cid", "runtime"),
    [
        (f"docker-{DOCKER}.scope", DOCKER, "docker"),
        (f"cri-containerd-{CONTAINERD}.scope", CONTAINERD, "containerd"),
        (f"crio-{CRIO}.scope", CRIO, "cri-o"),
        (f"libpod-{PODMAN}.scope", PODMAN, "podman"),
        (f"kubepods-burstable-pod{POD_UID_SYSTEMD}.slice:cri-containerd:{CONTAINERD}", CONTAINERD, "containerd"),
        (BARE, BARE, "unknown"),  # no parent to tell the runtime
        ("lxc.payload.web01", "web01", "lxc"),
        ("systemd-nspawn@debian.service", "debian", "systemd-nspawn"),
    ],
)
def test_leaf_names(name, cid, runtime):
    assert from_cgroup_name(name) == Container(cid, runtime)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "container",  # podman's leaf: the id is in the parent, which a name lacks
        "session-2.scope",
        "sshd.service",
        "92ab300b44b8554810cdb49c716168be",
        f"crio-conmon-{CRIO}.scope",
        f"libpod-conmon-{PODMAN}.scope",
        "lxc.monitor.web01",
        "web01",  # an LXC name alone is indistinguishable from any cgroup
        f"docker-{DOCKER[:40]}.scope",  # too short without truncation
    ],
)
def test_leaf_names_without_container(name):
    assert from_cgroup_name(name) is None


def test_truncated_leaf_name():
    # The BPF side reads at most 127 bytes of the name; a long slice prefix
    # cuts the id, and Tetragon then accepts 31+ characters.
    name = f"kubepods-burstable-pod{POD_UID_SYSTEMD}.slice:cri-containerd:{CONTAINERD}"[:127]
    c = from_cgroup_name(name)
    assert c is not None and c.runtime == "containerd"
    assert CONTAINERD.startswith(c.id) and len(c.id) < 64
    assert c.tetragon_id == CONTAINERD[:31]
    # cut inside ".scope": the id is whole, the leftover is dropped
    name = ("x" * 50 + f"-docker-{DOCKER}.scope")[:127]
    assert from_cgroup_name(name) == Container(DOCKER, "docker")
