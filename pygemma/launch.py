"""The command line's entry point (the `pygemma` script and `python -m pygemma`).

It imports nothing heavy itself: a Ctrl-C while the command line's modules load (numpy, the C
core: a second or more on a busy machine) ends the program as one during the run does, with
exit status 130 and no traceback."""
import sys


def main(argv=None):
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt:
        print("\npygemma: interrupted", file=sys.stderr)
        return 130
    return cli_main(argv)
