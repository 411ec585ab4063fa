"""procscope: a live process monitor for the terminal, driven by eBPF."""

__version__ = "0.1.0"
