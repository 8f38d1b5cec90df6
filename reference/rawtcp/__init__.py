"""Reference raw-TCP implementation of one lottery round (the classic course design).

Used by the benchmark as the baseline for the HTTP service: a fork-per-connection
server (:mod:`.server`), one uploader process per agency (:mod:`.agency`), a
length-prefixed wire protocol (:mod:`.protocol`) and a driver that runs a whole
round and times it (:mod:`.round`). Standard library, plus the service's own
atomic file replace (app/atomicfile.py), log format (app/logs.py) and winning number
(app/domain.py), shared rather than copied. See README.md beside this file.
"""
