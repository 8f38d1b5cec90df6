"""The uploader (`python -m client`) as separate programs against real gunicorn."""

from __future__ import annotations

import csv
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from client.generate import generate
from devtools.server import Server, free_port
from tests.helpers import expected_rows, round_file, stored_rows
from tests.support.proxy import HoldingProxy, hold_after
from tests.support.uploader import run_uploader, uploader
from tests.support.waits import wait_for_bets

# Per generated file: enough that a kill once 10 or 20 thousand are stored lands mid-upload.
BETS = 60_000


def test_five_uploaders_on_the_course_dataset(tmp_path: Path, dataset: Path) -> None:
    files = {a: dataset / f"agency-{a}.csv" for a in range(1, 6)}
    with Server(tmp_path / "data", workers=3) as server:
        procs = {
            a: uploader("run", "--agency", str(a), "--file", str(p), "--server", server.url, "--json")
            for a, p in files.items()
        }
        results = {a: p.communicate(timeout=120) + (p.returncode,) for a, p in procs.items()}
        for _agency, (_out, err, code) in results.items():
            assert code == 0, err
            assert "action: consulta_ganadores | result: success | cant_ganadores: " in err
        counts = [len(json.loads(results[a][0])["winners"]) for a in files]
        assert counts == [2, 3, 3, 2, 0]
        assert stored_rows(server.data_dir) == expected_rows(files)
        assert server.log().count("action: sorteo | result: success") == 1


def test_killed_uploader_rerun_with_other_batch_size_stores_each_bet_once(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=1, bets=BETS, seed=7), 1))
    with Server(tmp_path / "data", workers=3, agencies=1) as server, HoldingProxy(server.port, allow=20) as proxy:
        # Killed once 20 chunks of 1,000 are stored and the next is held: nothing else in flight.
        upload = ("run", "--agency", "1", "--file", str(files[1]))
        first = uploader(*upload, "--server", proxy.url, "--batch-size", "1000", "--concurrency", "2")
        hold_after(proxy, first, lambda: httpx.get(server.url + "/status").json()["bets"], 20_000)
        partial = httpx.get(server.url + "/status").json()["bets"]
        assert partial == 20_000

        upload = (*upload, "--server", server.url)
        code, out, err = run_uploader(*upload, "--batch-size", "777", "--concurrency", "3")
        assert code == 0, err
        assert f"ya_almacenadas: {partial}" in err  # it skipped what was stored instead of resending
        assert stored_rows(server.data_dir) == expected_rows(files)

        # Killed after done, and run again: still nothing twice, and the winners again.
        code, out2, err2 = run_uploader(*upload, "--batch-size", "5", timeout=60)
        assert code == 0, err2
        assert out2 == out
        assert stored_rows(server.data_dir) == expected_rows(files)


@pytest.mark.long  # a server restart mid-upload, as the fault tests do: `make test-long`
def test_server_restart_during_upload_loses_and_doubles_nothing(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=2, bets=BETS, seed=3), 1))
    server = Server(tmp_path / "data", workers=3, agencies=2).start()
    try:
        procs = [
            uploader(
                *("run", "--agency", str(a), "--file", str(p), "--server", server.url),
                *("--batch-size", "1000", "--concurrency", "2"),
            )
            for a, p in files.items()
        ]
        wait_for_bets(server.url, 20_000)
        server.stop(signal.SIGTERM)
        time.sleep(0.5)  # the uploaders meet a closed port and back off
        server.start()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert "action: reintento" in err
        assert stored_rows(server.data_dir) == expected_rows(files)
        assert server.log().count("action: sorteo | result: success") == 1
    finally:
        server.stop()


def test_rejected_chunk_names_the_file_line_and_stores_nothing_of_it(tmp_path: Path) -> None:
    path = tmp_path / "agency-1.csv"
    lines = [f"Ana,Gómez,{10_000_000 + i},1990-01-01,{i % 10_000}\n" for i in range(300)]
    lines[149] = "Ana,Gómez,12345678,1990-02-30,5\n"  # line 150: no February 30th
    path.write_text("".join(lines), encoding="utf-8")
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        upload = ("run", "--agency", "1", "--file", str(path), "--server", server.url)
        code, _, err = run_uploader(*upload, "--batch-size", "100", "--concurrency", "1", timeout=60)
        assert code == 1
        assert f"{path}:150: birthdate is not a valid calendar date" in err
        stored = stored_rows(server.data_dir)
        # Lines 101-200 were one chunk: none of them is stored; the first chunk is.
        assert sorted(r[3] for r in stored) == [str(10_000_000 + i) for i in range(100)]
        assert httpx.get(server.url + "/status").json()["done_count"] == 0


def test_malformed_csv_fails_before_sending_anything(tmp_path: Path) -> None:
    path = tmp_path / "agency-1.csv"
    path.write_text("Ana,Gómez,1,1990-01-01,5\nLuis,Pérez,2,1990-01-01\n", encoding="utf-8")
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        code, _, err = run_uploader("run", "--agency", "1", "--file", str(path), "--server", server.url, timeout=30)
        assert code == 1
        assert f"{path}:2: malformed CSV: 4 fields, expected 5" in err
        assert httpx.get(server.url + "/status").json()["bets"] == 0


def test_single_bet_mode_with_the_course_variables(tmp_path: Path) -> None:
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        env = {
            "NOMBRE": "Santiago Lionel",
            "APELLIDO": "Lorca",
            "DOCUMENTO": "30904465",
            "NACIMIENTO": "1999-03-17",
            "NUMERO": "7574",
            "LOTTERY_SERVER": server.url,
            "LOTTERY_AGENCY": "2",
        }
        code, _, err = run_uploader("bet", env=env, timeout=30)
        assert code == 0, err
        assert "action: apuesta_enviada | result: success | dni: 30904465 | numero: 7574" in err
        assert list(csv.reader(open(round_file(server.data_dir, "bets.csv"), encoding="utf-8"))) == [
            ["2", "Santiago Lionel", "Lorca", "30904465", "1999-03-17", "7574"]
        ]


def test_clear_errors(tmp_path: Path) -> None:
    code, _, err = run_uploader(
        "run", "--agency", "1", "--file", str(tmp_path / "nope.csv"), "--server", "http://127.0.0.1:9", timeout=30
    )
    assert code == 1 and "bets file not found" in err

    path = tmp_path / "a.csv"
    path.write_text("Ana,Gómez,1,1990-01-01,5\n")
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_uploader(
        "run", "--agency", "1", "--file", str(path), "--server", url, "--retries", "1", timeout=30
    )
    assert code == 1
    assert f"after 2 attempts in 0 s: server unreachable at {url}" in err  # --retries 1: one retry
    assert err.count("action: reintento") == 1

    assert run_uploader("run", "--agency", "zero", "--file", str(path), timeout=30).code == 2


def test_sigterm_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=1, bets=BETS, seed=5), 1))
    with Server(tmp_path / "data", workers=2, agencies=1) as server:
        upload = ("run", "--agency", "1", "--file", str(files[1]), "--server", server.url)
        proc = uploader(*upload, "--batch-size", "1000", "--concurrency", "2")
        wait_for_bets(server.url, 10_000)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + signal.SIGTERM
        assert "result: interrupted | signal: SIGTERM" in err
        code, _, err = run_uploader(*upload)
        assert code == 0, err
        assert stored_rows(server.data_dir) == expected_rows(files)


def test_an_uploader_says_it_waits_for_the_draw_and_for_how_many_agencies(tmp_path: Path) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=2, bets=50, seed=9), 1))
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        first = uploader("run", "--agency", "1", "--file", str(files[1]), "--server", server.url)
        seen = []
        for line in first.stderr:  # the observed event: it says it is waiting, then holds a long poll
            seen.append(line)
            if "action: espera_sorteo" in line:
                break
        assert "| agencia: 1 | finalizadas: 1/2 | esperando_agencias: 1 |" in seen[-1], seen
        second = uploader("run", "--agency", "2", "--file", str(files[2]), "--server", server.url)
        assert second.wait(timeout=60) == 0
        _, rest = first.communicate(timeout=60)
        assert first.returncode == 0, rest
        assert "action: consulta_ganadores | result: success" in rest


@pytest.mark.parametrize("seconds", ["0.4", "1.5"])
def test_waiting_for_the_draw_keeps_its_pace_to_the_last_second(tmp_path: Path, seconds: str) -> None:
    # With under a second left, the long poll's hold rounds down to 0: the uploader asked again
    # at once, and again, hammering the server until its deadline (hundreds of requests).
    from tests.integration.test_metrics import scrape, value

    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        code, _, err = run_uploader(
            "winners", "--agency", "1", "--wait", "--timeout", seconds, "--server", server.url, timeout=30
        )
        assert (code, "did not happen within" in err) == (1, True), err[-2000:]
        route = "/agencies/{agency}/winners"
        asked = value(
            scrape(server.url), "lottery_request_duration_seconds_count", method="GET", route=route, status="425"
        )
        assert asked <= 3, f"{asked:.0f} asks in {seconds} s"


def test_winners_are_printed_and_logged_with_their_agency(tmp_path: Path) -> None:
    # Issue 25: five uploaders in one terminal printed bare documents, and logged
    # `consulta_ganadores | ... | cant_ganadores: 7` without saying whose.
    (tmp_path / "a1.csv").write_text("Ana,Paz,30000001,1990-01-01,7574\nLuis,Paz,30000002,1990-01-01,7574\n")
    (tmp_path / "a2.csv").write_text("Eva,Sol,30000003,1990-01-01,1\n")
    with Server(tmp_path / "data", workers=2, agencies=2) as server:
        first = uploader("run", "--agency", "1", "--file", str(tmp_path / "a1.csv"), "--server", server.url)
        second = run_uploader("run", "--agency", "2", "--file", str(tmp_path / "a2.csv"), "--server", server.url)
        out, err = first.communicate(timeout=60)
        again = run_uploader("winners", "--agency", "1", "--server", server.url)
    assert (first.returncode, second.code, again.code) == (0, 0, 0), err + second.err + again.err
    assert sorted(out.splitlines()) == ["agency 1: 30000001", "agency 1: 30000002"]
    assert again.out == out
    assert second.out == "agency 2: no winners\n"
    assert err.splitlines()[-1].endswith(
        "action: consulta_ganadores | result: success | cant_ganadores: 2 | agencia: 1"
    )
    assert second.err.splitlines()[-1].endswith(
        "action: consulta_ganadores | result: success | cant_ganadores: 0 | agencia: 2"
    )
