"""``python -m audiobook`` runs the CLI (and so does the ``audiobook`` script)."""

import sys


def run() -> None:
    """The command line, with Ctrl-C and SIGTERM handled from its first line on: the
    imports of the CLI take a while, and a signal during them ends in one line too."""
    from . import interrupt
    from .errors import Terminated

    interrupt.install()
    try:
        from .cli import main
    except (KeyboardInterrupt, Terminated) as e:
        interrupt.hold_off()
        sys.stderr.write(f"audiobook: error: {interrupt.message(e)}\n")
        sys.exit(interrupt.exit_code(e))
    main()


if __name__ == "__main__":
    run()
