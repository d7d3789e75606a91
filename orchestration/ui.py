"""`make ui`: ``dagster dev`` with SIGINT and SIGTERM at their defaults, so either one stops it within seconds.

A shell starting a command in the background (``make ui &``, a script, nohup) hands it SIGINT ignored, and
``dagster dev`` maps SIGTERM to whatever SIGINT does: such a `make ui` ignored both and only SIGKILL ended it,
leaving its webserver, daemon and code servers behind. Restored to the defaults here, before ``exec``, Python
in ``dagster dev`` turns either signal into its KeyboardInterrupt shutdown, which stops the webserver, the
daemon and the code servers. Arguments are passed to ``dagster dev`` unchanged.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    dagster = Path(sys.executable).with_name("dagster")
    os.execv(dagster, [str(dagster), "dev", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
