"""procscope's Textual UI: widgets that render the process cache."""

# The checkout has this folder at its root as well as at procscope/tui:
# imported by the bare name it would be a second copy of every module
# (two caches of the same state, classes that are not the same class).
if __name__ == "tui":
    raise ImportError("import procscope.tui, not tui: the folder is linked into the procscope package")
