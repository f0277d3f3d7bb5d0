#!/usr/bin/env python3
"""Runs a test binary against a PostgreSQL server of its own (pg.py): its
connection string in TROUPE_TEST_PG; the server stopped whatever happens.

usage: pg_run.py BINARY [ARGS...]
"""
import os
import subprocess
import sys

import pg

server = pg.server()
try:
    env = dict(os.environ, TROUPE_TEST_PG=server.conninfo())
    code = subprocess.run(sys.argv[1:], env=env).returncode
finally:
    server.stop()
sys.exit(code)
