# pg_auto_failover for the `ha` compose profile (deploy/compose.py): PostgreSQL 15 from the
# official Debian-based image, plus Debian's pg_auto_failover package (pg_autoctl).
FROM postgres:15-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-auto-failover \
    && rm -rf /var/lib/apt/lists/*
# pg_autoctl runs as postgres, its data, config and state in one volume (see HA_ENV).
RUN mkdir -p /var/lib/postgresql/pgaf && chown postgres:postgres /var/lib/postgresql/pgaf
