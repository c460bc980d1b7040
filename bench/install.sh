#!/bin/sh
# install.sh installs what `make bench` measures migrated against, only what is missing. Debian
# only; as root or through sudo.
#   PostgreSQL: pgcopydb, pgbench, pg_dump and the server.
#   MariaDB: the server (mariadbd, mariadb-install-db), sysbench for the load, mariadb-client
#   (mariadb, mariadb-dump) for the dump pipe and the replica, and pgloader for MariaDB → PostgreSQL.
set -eu
cd "$(dirname "$0")/.."
exec scripts/install-deps.sh postgresql-15 postgresql-client-15 postgresql-contrib pgcopydb \
	mariadb-server mariadb-client sysbench pgloader
