# pg_auto_failover for the `ha` compose profile (deploy/compose.py): PostgreSQL 15 from the
# official Debian-based image, plus Debian's pg_auto_failover package (pg_autoctl).
FROM postgres:15-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-auto-failover \
    && rm -rf /var/lib/apt/lists/*
# pg_autoctl runs as postgres; its data, config and state go in one volume (deploy/compose.py's
# HA_ENV). The XDG directories must exist, or pg_autoctl falls back to ~/.config and
# ~/.local/share, outside the volume: a new volume starts with this content.
RUN mkdir -p /var/lib/postgresql/pgaf/config /var/lib/postgresql/pgaf/share \
    && chown -R postgres:postgres /var/lib/postgresql/pgaf
