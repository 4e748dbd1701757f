"""CLI subcommands of `odd-one-out` (see odd_one_out_ros.cli). Heavy imports stay inside run()."""


class CommandError(Exception):
    """A command stops: `odd_one_out_ros.cli.main` prints "odd-one-out COMMAND: message" on stderr, once, no
    traceback, and exits with `code`: 2 bad input (a file, an argument; the default), 1 a failure at run time."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
