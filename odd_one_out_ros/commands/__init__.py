"""CLI subcommands of `odd-one-out` (see odd_one_out_ros.cli). Heavy imports stay inside run()."""
