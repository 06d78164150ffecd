"""Child processes end with the process that started them, however it ends (SIGKILL included).

A worker of ``iotgen generate --workers K`` or the ingest's receiver holds hundreds of MB; left behind by a killed
parent it would live on, holding memory (and, for the receiver, a connection). :func:`exit_with_parent` starts a
daemon thread that polls the parent's PID and ends this process with ``os._exit`` once it changes (the child was
re-parented: its parent is gone). Polling, rather than Linux's ``PR_SET_PDEATHSIG``, works on macOS too and does
not depend on which of the parent's threads started the child.
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def exit_with_parent(parent_pid: int) -> None:
    """End this process within ``POLL_SECONDS`` of the death of its parent ``parent_pid`` (pass the PID the parent
    had when it started this process: by the time a slow child gets here, the parent may be gone already)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="iotgen-exit-with-parent", daemon=True).start()
