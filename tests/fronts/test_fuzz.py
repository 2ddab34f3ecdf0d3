"""The command protocol fuzzed: request bodies generated from the command registry (every
command and the arguments it declares, values of their types and of every other, unknown
keys, odd noderanges, deep and odd JSON, long strings, lone surrogates, numbers that are not
finite, bodies that are not JSON at all; tests/support/fuzz.py) go to one live xcatd on a
scratch management node (module scope), as root over HTTPS.

Every answer must be a 200 whose records end with an ``end`` record, or a 400/413 with a
JSON error, never a 500; no record may carry an internal error or a traceback, nor an error
longer than xcatd cuts them; xcatd logs no error while it answers; an ``async`` job ends;
and after the run xcatd still answers ``/v1/ping``. The tables are put back after each
request that may write them, so each example runs on the same cluster.

The run is bounded and reproducible: ``EXAMPLES`` examples, derandomized (the same ones on
every run and machine), no deadline, no timing assertion; it takes a few seconds.

The bugs it found (all fixed) keep a test each at the end, with the exact input.
"""
from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from support.fuzz import (
    ScratchMN,
    bodies,
    dumps,
    is_writer,
    problems,
    request_body,
    scratch_mn,
)
from support.privileges import DAEMON_IS_ROOTS, need_root

EXAMPLES = 300


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One scratch management node and its xcatd for the whole module."""
    need_root(DAEMON_IS_ROOTS)
    with scratch_mn(tmp_path_factory.mktemp("fuzz")) as mn:
        yield mn


class Logs(logging.Handler):
    """What xcatd (in this process) logs at ERROR or above, with the exception's class."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.lines.append(f"log {record.name}: {record.getMessage()[:500]}"
                          + (f" [{exc.__class__.__name__}: {str(exc)[:300]}]" if exc else ""))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@pytest.fixture
def logs():
    handler = Logs()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# ---- the fuzz run --------------------------------------------------------------------------
def _command(body) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("request"), dict):
        command = body["request"].get("command")
        return command if isinstance(command, str) else None
    return None


def _async_job(node: ScratchMN, reply) -> list[str]:
    """What is wrong with how an async request's job ended (waited for, 10 s at most: the
    jobs a fuzz run makes take well under a second)."""
    if reply.status != 200:
        return []
    end = reply.records()[-1].get("end", {})
    if not end.get("async"):
        return []
    waited = node.post(request_body("job", None, {"action": "wait", "jobid": end["job"],
                                                  "timeout": 10}))
    found = problems(waited)
    for rec in waited.records() if waited.status == 200 else []:
        if "Timed out waiting" in str(rec.get("r", {}).get("error")):
            found.append(f"the async job {end['job']} did not end: {rec['r']['error']}")
    return found


def test_fuzzed_requests_are_answered_and_xcatd_stays_up(node, logs):
    jobs = node.thread.daemon.pipeline.jobs

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              print_blob=False, suppress_health_check=list(HealthCheck))
    @given(body=bodies())
    def one(body) -> None:
        raw = body if isinstance(body, bytes) else dumps(body, node.scratch)
        logs.take()
        reply = node.post(raw)
        found = problems(reply)
        found += _async_job(node, reply)
        jobs.flush()  # the job writer's complaints about this request, now
        found += logs.take()
        command = _command(body)
        if command is not None and is_writer(command):
            node.reset()
        assert not found, (f"request body {raw[:3000]!r}\nanswered HTTP {reply.status}: "
                           f"{reply.raw[:3000]!r}\n" + "\n".join(found))

    one()
    reply = node.ping()
    assert reply.status == 200 and reply.json() == {"xcatd": "ok", "user": "root"}, reply


# ---- the bugs it found (fixed): each one's exact input -------------------------------------
def answer(node: ScratchMN, raw: bytes) -> tuple[int, list[str]]:
    reply = node.post(raw)
    return reply.status, problems(reply)


def refused(node: ScratchMN, raw: bytes) -> str:
    """The one error of a request answered as a bad request (and nothing else wrong)."""
    reply = node.post(raw)
    assert reply.status == 200 and not problems(reply), (reply.status, problems(reply))
    errors = [r["r"] for r in reply.records() if r.get("r", {}).get("error")]
    assert [e["kind"] for e in errors] == ["bad_request"], errors
    return errors[0]["error"]


def test_a_number_of_4301_digits_is_a_400_not_a_500(node):
    raw = b'{"request": {"command": "tabdump", "args": {"number": ' + b"7" * 4301 + b"}}}"
    reply = node.post(raw)
    assert reply.status == 400 and "not usable JSON" in reply.json()["error"], reply


def test_json_nested_980_deep_is_a_400_not_a_500(node):
    raw = (b'{"request": {"command": "nodels", "args": {"attributes": ' + b"[" * 980
           + b"]" * 980 + b"}}}")
    reply = node.post(raw)
    assert reply.status == 400, reply
    assert reply.json()["error"].endswith("request.args.attributes[0][0][0][0][0][0][0]"
                                          "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                                          "[0][0][0][0][0][0][0]: nested more than 32 deep"), \
        reply.json()


@pytest.mark.parametrize("command, args", [
    ("job", {"action": "list", "limit": float("nan")}),
    ("job", {"action": "list", "limit": float("inf")}),
    ("job", {"action": "list", "limit": 10**19}),
    ("job", {"action": "list", "limit": 1e300}),
    ("tabdump", {"table": "auditlog", "number": float("nan")}),
    ("tabdump", {"table": "eventlog", "number": float("-inf")}),
    ("tabprune", {"table": "jobs", "number": float("inf")}),
], ids=["job-limit-nan", "job-limit-inf", "job-limit-2**63+", "job-limit-1e300",
        "tabdump-number-nan", "tabdump-number--inf", "tabprune-jobs-number-inf"])
def test_numbers_that_are_not_finite_or_too_large_are_bad_requests(node, command, args):
    name = next(k for k in args if k not in ("action", "table"))
    message = refused(node, request_body(command, None, args))
    assert f"argument '{name}' must be a finite number of at most 64 bits" in message


@pytest.mark.parametrize("args", [{"table": "auditlog", "all": True},
                                  {"table": "auditlog", "days": 1},
                                  {"table": "auditlog", "recid": 5}],
                         ids=["all", "days", "recid"])
def test_tabprune_with_one_option_alone_is_no_internal_error(node, args):
    status, found = answer(node, request_body("tabprune", None, args))
    assert status == 200 and not found, (status, found)
    node.reset()


def test_reventlog_with_an_unknown_word_is_one_bad_request(node):
    reply = node.post(request_body("reventlog", "n1", {"what": "bogus"}))
    assert reply.status == 200 and not problems(reply), problems(reply)
    errors = [r["r"] for r in reply.records() if "r" in r]
    assert len(errors) == 1 and errors[0]["kind"] == "bad_request", errors


def test_a_lone_surrogate_is_refused_at_the_door(node):
    reply = node.post(request_body("nodels", "\ud800"))
    assert reply.status == 400, reply
    assert reply.json()["error"] == ("the request body is unusable: request.noderange: not "
                                     "Unicode text (a lone surrogate, '\\ud800')")


@pytest.mark.parametrize("state", [",", ",,", " , "])
def test_nodeset_with_a_state_of_commas_is_a_bad_request(node, state):
    assert refused(node, request_body("nodeset", "n1", {"state": state})).startswith("Usage")


@pytest.mark.parametrize("command, noderange, args", [
    ("nodels", "x" * 50_001, {}),
    ("rpower", "x" * 50_001, {"action": "stat"}),
    ("lsdef", None, {"type": "node", "objects": "x" * 50_001}),
    ("tabdump", None, {"table": "nodelist", "where": ["groups=~" + "x" * 50_001]}),
], ids=["nodels", "rpower", "lsdef-objects", "tabdump-where"])
def test_a_name_or_pattern_past_sqlites_like_limit_is_no_internal_error(node, command,
                                                                        noderange, args):
    reply = node.post(request_body(command, noderange, args))
    assert reply.status == 200 and not problems(reply), problems(reply)
    errors = [r["r"] for r in reply.records() if r.get("r", {}).get("error")]
    assert errors and all(e["kind"] in ("bad_request", "not_found") for e in errors), errors
