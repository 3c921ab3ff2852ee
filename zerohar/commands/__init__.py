"""One module per `zerohar` command: `add_arguments(parser)` and `run(args) -> int`; thin doors into the library."""
