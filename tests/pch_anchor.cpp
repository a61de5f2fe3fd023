// Compiles the suites' precompiled header (see tests/CMakeLists.txt); has no code of its own.
