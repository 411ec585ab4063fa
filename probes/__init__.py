"""procscope's kernel side: the BPF programs, their loader, the collector and the decoders."""

# The checkout has this folder at its root as well as at procscope/probes:
# imported by the bare name it would be a second copy of every module
# (two caches of the same state, classes that are not the same class).
if __name__ == "probes":
    raise ImportError("import procscope.probes, not probes: the folder is linked into the procscope package")
