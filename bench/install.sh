#!/bin/sh
# install.sh installs what `make bench` measures migrated against (pgcopydb, pgbench, pg_dump and
# the PostgreSQL server), only what is missing. Debian only; as root or through sudo.
set -eu
cd "$(dirname "$0")/.."
exec scripts/install-deps.sh postgresql-15 postgresql-client-15 postgresql-contrib pgcopydb
