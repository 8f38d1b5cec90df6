"""Facts the uploader keeps its own copy of (it never imports app/) agree with the server's."""

from __future__ import annotations

import client.__main__ as client_cli
import client.generate
from app import domain, logs
from app.settings import Settings


def test_the_winning_number_is_the_courses_everywhere():
    # 7574 is the course's number (the spec), written here on purpose, independently.
    assert domain.WINNING_NUMBER == 7574
    assert Settings.model_fields["winning_number"].default == domain.WINNING_NUMBER  # not the environment's
    assert client.generate.WINNING_NUMBER == domain.WINNING_NUMBER


def test_the_uploader_logs_in_the_servers_format():
    assert (client_cli.LOG_FORMAT, client_cli.LOG_DATEFMT) == (logs.FORMAT, logs.DATEFMT)
