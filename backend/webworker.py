"""The web process's gunicorn worker (`--worker-class backend.webworker.Worker`): gunicorn's gthread worker
that keeps a busy keep-alive connection in the thread that answered it.

With plain gthread every request on a kept-alive connection travels: the answering thread hands the
connection back to the main thread (a pipe write and a wake-up), the main thread puts it on its poller,
wakes again when the next request arrives and hands it to a pool thread (another wake-up). Each hand-off
is a thread switch and a pass of the GIL, and under load those cost the worker a third of its time.

Here the thread that answered waits on the socket itself, for at most LINGER seconds, and answers the next
request at once when it comes (a client that sends requests one after another, as the consoles, the
gateways and the API's users do). A connection quiet for longer goes back to the poller as before, so an
idle client holds no thread. Everything else (Socket.IO's threading mode, graceful stops, keep-alive
limits, max-requests restarts) is gthread's own.
"""
from __future__ import annotations

import select

from gunicorn.workers.gthread import ThreadWorker

LINGER = 0.1  # seconds a thread waits for the next request on its connection before handing it back


def next_request_within(sock, timeout: float) -> bool:
    """True if the socket becomes readable (a request, or the client closing) within `timeout` seconds."""
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted are not seen by poll()
    if pending is not None and pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    try:
        return bool(poller.poll(timeout * 1000))
    except (OSError, ValueError):  # closed meanwhile: let gthread's own path find out
        return True


class Worker(ThreadWorker):
    def handle(self, conn):
        """Answer requests on `conn` for as long as they follow each other within LINGER."""
        while True:
            keep = super().handle(conn)
            if keep is not True or not self.alive:
                return keep
            if conn.parser.unreader.buf.getvalue():  # the next request is already read: gthread requeues it
                return keep
            if not next_request_within(conn.sock, LINGER):
                return keep  # quiet: back to the poller, no thread held
            conn.data_ready = True
