"""Django's PostgreSQL backend, with a connection health check that needs no round trip.

With CONN_HEALTH_CHECKS on, Django checks a persistent connection before a request or task first
uses it by running `SELECT 1`: one more round trip and statement for every request and every
task (measured: 10–30% of the booking throughput on two cores). A connection that the server
closed, restarted or terminated has something to read on its socket (the server's goodbye, or
end of file), and a connection psycopg saw fail is marked bad; an idle connection in good order
has nothing to read. So: bad or closed → unusable; something to read → `SELECT 1` decides, as
before; nothing to read → usable, without asking the server. What this cannot see is a peer
that vanished without a word (a network partition); `SELECT 1` would then hang as long as the
first real statement does, which fails and answers 503 (testbed/unavailable.py), and Django
drops the connection after that request.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        pgconn = connection.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return False
        if pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return super().is_usable()
        try:
            readable, _w, _x = select.select([pgconn.socket], [], [], 0)
        except (OSError, ValueError, psycopg.Error):  # no socket any more
            return False
        return super().is_usable() if readable else True
