"""`make run`: honcho over the Procfile, with a stop grace period Celery's warm shutdown fits in.

On Ctrl-C honcho sends SIGTERM to every process and SIGKILLs what is still running 5 s after
the first one stopped; a worker finishing its running steps, or any worker on a busy
machine, takes longer than that. Honcho 2.0 has no option for that wait, so this sets it
(``STOP_TIMEOUT`` seconds, default 30) and then runs honcho's own command line::

    python scripts/run.py start -f Procfile
"""

from __future__ import annotations

import os
import sys

import honcho.manager
from honcho.command import main

if __name__ == "__main__":
    honcho.manager.KILL_WAIT = int(os.environ.get("STOP_TIMEOUT", "30"))
    sys.exit(main())
