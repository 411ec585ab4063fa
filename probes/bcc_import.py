"""Import BCC's Python module from the distribution, from any virtualenv.

The PyPI package called ``bcc`` is an unrelated lattice library, so bcc is
never a pip dependency: it comes with the distro package (Debian/Ubuntu
``python3-bpfcc``, Fedora ``python3-bcc``) and must match its libbcc.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from types import ModuleType

from .errors import SetupError

_SEARCH = (
    "/usr/lib/python3/dist-packages",  # Debian, Ubuntu
    "/usr/lib/python3*/site-packages",  # Fedora, Arch
    "/usr/lib64/python3*/site-packages",
    "/usr/local/lib/python3*/dist-packages",  # bcc built from source
)
INSTALL_HINT = (
    "install the distribution's BCC Python module (Debian/Ubuntu: apt-get install python3-bpfcc; "
    "Fedora: dnf install python3-bcc); the PyPI package 'bcc' is unrelated"
)


def _is_bpf_bcc(module: ModuleType) -> bool:
    return hasattr(module, "BPF") and hasattr(module, "lib")


def _trusted(path: str) -> bool:
    """Only load code that root owns and nobody else can change."""
    st = os.stat(path)
    return st.st_uid == 0 and not st.st_mode & 0o022


def import_bcc() -> ModuleType:
    existing = sys.modules.get("bcc")
    if existing is not None and _is_bpf_bcc(existing):
        return existing
    for pattern in _SEARCH:
        for base in sorted(glob.glob(pattern), reverse=True):
            pkg = os.path.join(base, "bcc")
            init = os.path.join(pkg, "__init__.py")
            if not os.path.isfile(init) or not (_trusted(pkg) and _trusted(init)):
                continue
            # Load just this package, without putting the whole distro
            # site-packages on sys.path where it would shadow the venv.
            spec = importlib.util.spec_from_file_location("bcc", init, submodule_search_locations=[pkg])
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules["bcc"] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # libbcc missing or a broken install
                del sys.modules["bcc"]
                raise SetupError(f"BCC at {pkg} failed to import ({exc}): {INSTALL_HINT}") from exc
            if _is_bpf_bcc(module):
                return module
            del sys.modules["bcc"]
    raise SetupError(f"BCC's Python module was not found: {INSTALL_HINT}")
