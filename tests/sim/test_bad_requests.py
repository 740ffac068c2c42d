"""Requests g5k-api or its front proxy refuse get their 4xx and text, never a 500: the simulator keeps serving
and its stderr stays empty. Each test talks to `python -m g5kdeploy.simulator --users FILE` over HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket

import grid5000
import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.simulator import server as sim_server
from g5kdeploy.simulator.frontend import MAX_BODY, proxy_page

AUTH = ("jdoe", "pw")
INVALID = "The job you are trying to submit is not valid: "
RELAY = "Request to https://api.grid5000.fr/stable/sites/nancy/internal/oarapi/jobs.json failed with status 400: "
SYNTAX = (
    "Syntax error in reservation {} date, should at least match the format: 'YYYY-MM-DD hh:mm:ss'. "
    "Please see documentation for available date syntaxes."
)
JSON_BODY = {"Content-Type": "application/json"}


def _jobs_of(live, user="jdoe"):
    r = requests.get(f"{live.url}/sites/nancy/jobs", params={"user": user}, auth=AUTH, timeout=10)
    return r.json()["total"]


def _post_job(live, body):
    return requests.post(f"{live.url}/sites/nancy/jobs", json=body, auth=AUTH, timeout=30)


def _raw(live, request):
    """Send bytes as they are and read the one answer, within a deadline."""
    host, port = live.url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read().decode("latin-1")


def _basic(credentials):
    return b"Basic " + base64.b64encode(credentials)


def test_json_nested_100000_deep(live):
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/sites/nancy/jobs", "/sites/nancy/deployments", "/sites/nancy/jobs/1/walltime"):
        r = requests.post(f"{live.url}{path}", data=deep, headers=JSON_BODY, auth=AUTH, timeout=30)
        assert (r.status_code, r.text) == (400, "nesting of 101 is too deep"), path
    # Rails' JSON parser stops at 100 levels, the object itself being the first.
    r = _post_job(live, {"command": json.loads("[" * 99 + "]" * 99)})
    assert (r.status_code, r.text) == (400, INVALID + "`command` should be a String.")
    r = requests.post(
        f"{live.url}/sites/nancy/jobs",
        data='{"command": ' + "[" * 100 + "]" * 100 + "}",
        headers=JSON_BODY,
        auth=AUTH,
        timeout=30,
    )
    assert (r.status_code, r.text) == (400, "nesting of 101 is too deep")
    live.assert_unharmed()


@pytest.mark.parametrize("raw_id", ["%C2%B2", "%D9%A3", "9" * 5000], ids=["superscript-2", "arabic-3", "5000-digits"])
@pytest.mark.parametrize(
    ("method", "suffix", "text"),
    [
        ("GET", "", "Couldn't find OAR::Job with 'job_id'={}"),
        ("DELETE", "", "Couldn't find OAR::Job with 'job_id'={}"),
        ("GET", "/walltime", "Job id '{}' cannot be found."),
        ("POST", "/walltime", "Job id '{}' cannot be found."),
    ],
    ids=["get", "delete", "get-walltime", "post-walltime"],
)
def test_job_ids_that_are_not_ascii_digits(live, raw_id, method, suffix, text):
    """'²' and '٣' pass `str.isdigit`, and int() even reads '٣' as 3; 5000 digits are past what int() reads."""
    job_id = requests.utils.unquote(raw_id)
    r = requests.request(
        method,
        f"{live.url}/sites/nancy/jobs/{raw_id}{suffix}",
        json={"walltime": "+1:00"} if method == "POST" else None,
        auth=AUTH,
        timeout=30,
    )
    assert (r.status_code, r.text) == (404, text.format(job_id))
    live.assert_unharmed()


def test_job_id_superscript_through_python_grid5000(live):
    site = grid5000.Grid5000(uri=live.url, username="jdoe", password="pw").sites["nancy"]
    with pytest.raises(grid5000.exceptions.Grid5000GetError) as err:
        site.jobs["²"]
    assert (err.value.response_code, err.value.error_message) == (404, "Couldn't find OAR::Job with 'job_id'=²")
    live.assert_unharmed()


def test_chunked_bodies(live):
    """A malformed chunked body is the front proxy's 400; a well-formed one still submits."""
    before = _jobs_of(live)
    head = (
        b"POST /stable/sites/nancy/jobs HTTP/1.1\r\nHost: sim\r\nAuthorization: "
        + _basic(b"jdoe:pw")
        + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = b'{"command": "sleep 60"}'
    for broken in (b"zz\r\n" + body + b"\r\n0\r\n\r\n", b"%x\r\n" % len(body) + body + b"XX0\r\n\r\n"):
        assert _raw(live, head + broken) == (400, proxy_page(400))
    assert _jobs_of(live) == before
    status, _ = _raw(live, head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    assert status == 201 and _jobs_of(live) == before + 1
    live.assert_unharmed()


def test_unknown_queue_is_oarsubs_refusal(live):
    site = grid5000.Grid5000(uri=live.url, username="jdoe", password="pw").sites["nancy"]
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 60", "queue": "nosuch"})
    assert err.value.response_code == 400
    assert err.value.error_message == (
        RELAY + "Oarsub command exited with status 8: # Error: queue 'nosuch' does not exist"
    )
    live.assert_unharmed()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"command": "sleep 60", "name": {"a": 1}}, "`name` should be a String."),
        ({"command": "sleep 60", "types": {"deploy": True}}, "`types` should be an Array of Strings."),
        ({"command": "sleep 60", "types": ["deploy", 1]}, "`types` should be an Array of Strings."),
        ({"command": ["sleep", "60"]}, "`command` should be a String."),
        (
            {"command": "sleep 60", "name": ["x"], "types": {}},
            "`name` should be a String.; `types` should be an Array of Strings.",
        ),
    ],
    ids=["name-object", "types-object", "types-non-string", "command-list", "two-fields"],
)
def test_ill_typed_job_fields(live, body, errors):
    before = _jobs_of(live)
    r = _post_job(live, body)
    assert (r.status_code, r.text) == (400, INVALID + errors)
    assert _jobs_of(live) == before
    live.assert_unharmed()


def test_bodies_over_a_mebibyte_are_the_proxys_413(live):
    before = _jobs_of(live)
    site = grid5000.Grid5000(uri=live.url, username="jdoe", password="pw").sites["nancy"]
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "x" * 20_000_000})
    assert (err.value.response_code, err.value.error_message) == (413, proxy_page(413, "POST"))
    # The limit is on any route and any body, counted in bytes: exactly MAX_BODY is read, one more is not.
    prefix = '{"command": "true #'
    exact = (prefix + "x" * (MAX_BODY - len(prefix) - 2) + '"}').encode()
    assert len(exact) == MAX_BODY
    r = requests.post(f"{live.url}/sites/nancy/jobs", data=exact, headers=JSON_BODY, auth=AUTH, timeout=30)
    assert r.status_code == 201 and _jobs_of(live) == before + 1
    over = exact[:-2] + b'x"}'
    r = requests.post(f"{live.url}/sites/nancy/jobs", data=over, headers=JSON_BODY, auth=AUTH, timeout=30)
    assert (r.status_code, r.text) == (413, proxy_page(413, "POST"))
    r = requests.get(f"{live.url}/sites", data=over, auth=AUTH, timeout=30)
    assert (r.status_code, r.text) == (413, proxy_page(413, "GET"))
    r = requests.post(f"{live.url}/sites/nancy/jobs", data=iter([over]), headers=JSON_BODY, auth=AUTH, timeout=30)
    assert (r.status_code, r.text) == (413, proxy_page(413, "POST"))  # chunked: no Content-Length to trust
    assert _jobs_of(live) == before + 1
    live.assert_unharmed()


@pytest.mark.parametrize(
    ("reservation", "bad"),
    [
        ("NOW", ["start"]),
        (" now", ["start"]),
        ("now ", ["start"]),
        ("tomorrow noon", ["start"]),
        ("2030-01-01 10:00, later", ["end"]),
        ("soon, later", ["start", "end"]),
        ("now, now", ["end"]),
    ],
    ids=["NOW", "space-now", "now-space", "words", "bad-end", "both-bad", "now-now"],
)
def test_unparseable_reservations(live, reservation, bad):
    """g5k-api's own check: `now` only spelt exactly so, every bad date named, its wording."""
    r = _post_job(live, {"command": "sleep 60", "reservation": reservation})
    assert (r.status_code, r.text) == (400, INVALID + "; ".join(SYNTAX.format(part) for part in bad))
    r = _post_job(live, {"command": "sleep 60", "reservation": "now"})
    assert r.status_code == 201
    live.assert_unharmed()


@pytest.mark.parametrize(
    ("properties", "status", "text"),
    [
        ("(" * 5000 + "cluster='gros'" + ")" * 5000, 400, "Bad resource request (ERROR:  stack depth limit exceeded)"),
        ("not " * 5000 + "cluster='gros'", 400, "Bad resource request (ERROR:  stack depth limit exceeded)"),
        ("cluster like '" + "%" * 40 + "x'", 400, "There are not enough resources for your request"),
        ("memnode < " + "9" * 5000, 201, ""),
    ],
    ids=["deep-parentheses", "deep-not", "many-percents", "5000-digits"],
)
def test_properties_that_could_stall_or_crash_the_parser(live, properties, status, text):
    """Deep nesting and many `%` once overflowed the parser's recursion or backtracked for hours."""
    r = _post_job(live, {"command": "sleep 60", "properties": properties})
    assert r.status_code == status
    if status == 400:
        assert r.text.startswith(RELAY) and r.text.endswith(text)
    live.assert_unharmed()


def test_credentials_are_utf8_and_anything_else_is_the_proxys_401(live):
    """The users file is UTF-8 and so are credentials: python-grid5000 sends a bytes password as it is."""
    for login in ("marie", "luc"):  # 'pé-Ω ünï' has no Latin-1 form, 'café' has one
        password = live.users[login]
        gk = grid5000.Grid5000(uri=live.url, username=login, password=password.encode())
        assert len(gk.sites.list()) == 8
        assert gk.sites["nancy"].jobs.create({"command": "sleep 60"}).user == login
        with pytest.raises(grid5000.exceptions.Grid5000AuthenticationError):
            grid5000.Grid5000(uri=live.url, username=login, password=(password + "x").encode()).sites.list()
    for authorization in (
        b"Basic \xc3\xa9\xc3\xa9",  # UTF-8 bytes in the header itself, not base64
        b"Basic !!!!",
        _basic(b"jdoe"),  # no colon
        _basic(b"\xff\xfe:pw"),  # not UTF-8
        _basic(f"luc:{live.users['luc']}".encode("latin-1")),  # the right password in the wrong encoding
    ):
        request = b"GET /stable/sites HTTP/1.1\r\nHost: sim\r\nAuthorization: " + authorization + b"\r\n\r\n"
        assert _raw(live, request) == (401, proxy_page(401)), authorization
    live.assert_unharmed()


def test_a_stalled_body_is_the_proxys_408(monkeypatch, caplog, capfd):
    """A client that stops sending its body holds a server thread for the read timeout only."""
    monkeypatch.setattr(sim_server._QuietHandler, "timeout", 0.5)
    with serve_in_thread(SimConfig(seed=1)) as srv:
        request = (
            b"POST /stable/sites/nancy/jobs HTTP/1.1\r\nHost: sim\r\nAuthorization: "
            + _basic(b"jdoe:pw")
            + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"command": '
        )
        assert _raw(srv, request) == (408, proxy_page(408, "POST"))
        assert requests.get(f"{srv.url}/sites", timeout=10).status_code == 200
        assert srv.simulator.jobs() == []
    # In a thread, Flask's and werkzeug's error logs go to pytest's log capture rather than to stderr.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr().err == ""
