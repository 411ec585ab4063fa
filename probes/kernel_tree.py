"""Find a kernel headers tree for BCC to compile against.

BCC needs *a* configured headers tree for its helper headers, but not the
running kernel's: the programs read every struct field at a BTF-resolved
offset. So when the running kernel has no headers (VMs, WSL, cloud images),
any installed tree will do, e.g. Debian's ``linux-headers-amd64``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SetupError

HEADERS_HINT = "install a kernel headers package (Debian: apt-get install linux-headers-amd64; any version works)"


def _has_own_headers(release: str) -> bool:
    build = Path("/lib/modules") / release / "build"
    return (build / "include").is_dir() or Path("/sys/kernel/kheaders.tar.xz").exists()


def _version_key(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", os.path.basename(path))]


def _installed_trees() -> list[Path]:
    """Configured (built) header trees, newest first."""
    trees = [p for p in glob.glob("/usr/src/linux-headers-*") if os.path.isfile(f"{p}/include/generated/autoconf.h")]
    return [Path(p) for p in sorted(trees, key=_version_key, reverse=True)]


def _parts(tree: Path) -> list[Path]:
    """Debian splits a tree into an arch part whose Makefile includes the
    common part; return both (common last) so they can be merged."""
    parts = [tree]
    makefile = tree / "Makefile"
    if makefile.is_file():
        m = re.search(r"^include\s+(/usr/src/\S+)/Makefile\s*$", makefile.read_text(), re.M)
        if m and Path(m.group(1)).is_dir():
            parts.append(Path(m.group(1)))
    return parts


def _merge(dest: Path, sources: list[Path]) -> None:
    """Union of directory trees as symlinks, descending only where two
    sources have a directory of the same name."""
    dest.mkdir(exist_ok=True)
    names: dict[str, list[Path]] = {}
    for src in sources:
        for entry in src.iterdir():
            names.setdefault(entry.name, []).append(entry)
    for name, entries in names.items():
        dirs = [e for e in entries if e.is_dir()]
        if len(dirs) > 1:
            _merge(dest / name, dirs)
        else:
            (dest / name).symlink_to(entries[0])


def identity(release: str | None = None) -> str:
    """Which tree a compile would use (a compile cache's key holds it)."""
    release = release or os.uname().release
    if _has_own_headers(release) or os.environ.get("BCC_KERNEL_SOURCE"):
        return f"own {release} {os.environ.get('BCC_KERNEL_SOURCE', '')}"
    return " ".join(str(t) for t in _installed_trees()[:1])


@contextlib.contextmanager
def compile_tree(log=None, release: str | None = None) -> Iterator[None]:
    """Context in which BCC compiles: sets BCC_KERNEL_SOURCE to a merged
    private copy (symlinks) of an installed tree when the running kernel has
    no headers of its own."""
    release = release or os.uname().release
    if _has_own_headers(release) or os.environ.get("BCC_KERNEL_SOURCE"):
        yield
        return
    trees = _installed_trees()
    if not trees:
        raise SetupError(f"no kernel headers for {release} and no other headers tree installed: {HEADERS_HINT}")
    tree = trees[0]
    if log:
        log(f"no kernel headers for {release}; compiling against {tree.name} (struct offsets come from BTF)")
    tmp = Path(tempfile.mkdtemp(prefix="procscope-kernel-"))
    try:
        _merge(tmp / "tree", _parts(tree))
        os.environ["BCC_KERNEL_SOURCE"] = str(tmp / "tree")
        yield
    finally:
        os.environ.pop("BCC_KERNEL_SOURCE", None)
        shutil.rmtree(tmp, ignore_errors=True)
