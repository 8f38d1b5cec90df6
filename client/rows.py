"""A chunk's rows exactly as the server stores them: what the log's chunk digest is taken over.

The server (app/ingest.py, app/domain.py; the uploader never imports app/) turns each bet line
into ``agency, first_name, last_name, document, birthdate, number`` with the names stripped of
surrounding spaces and the number as an integer (``0042`` is ``42``), and writes them with the
csv module, LF after each row: ``tests/unit/test_verify.py`` checks the two agree (hypothesis).
"""

from __future__ import annotations

import csv
import io


def stored_rows(agency: int, body: bytes) -> bytes:
    """The stored bytes of ``body``: bet lines as the uploader sends them (UTF-8, LF-normalized)."""
    out = io.StringIO()
    write = csv.writer(out, lineterminator="\n").writerow
    for first, last, document, birthdate, number in csv.reader(io.StringIO(body.decode("utf-8")), strict=True):
        write((agency, first.strip(), last.strip(), document, birthdate, int(number)))
    return out.getvalue().encode("utf-8")


def winning_documents(rows: bytes, winning_number: int) -> list[str]:
    """The documents of the stored ``rows`` whose number is ``winning_number`` (the course's rule:
    a bet wins when its number equals the winning number), in order."""
    return [r[3] for r in csv.reader(io.StringIO(rows.decode("utf-8"))) if int(r[5]) == winning_number]
