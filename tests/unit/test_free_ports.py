"""devtools.server.free_ports: the ports a test's servers listen on are distinct."""

from __future__ import annotations

import socket

from devtools.server import free_ports


def test_ports_chosen_together_are_distinct_and_free() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    for port in ports:  # each can be listened on now
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
