"""Tetragon's gRPC API as procscope serves it: tetragon.proto (names and
numbers as Tetragon's) and the modules grpcio-tools generates from it
(`make proto`), which are not edited by hand."""
