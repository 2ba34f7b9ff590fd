"""The ``neuromask`` command line: argument parsing, progress display and exit codes."""
