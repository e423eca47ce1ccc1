"""The typed messages between a worker and its fork-server, as they travel (pure, no sandbox)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor.messages import Hello, RunObservation, RunRequest, TestObservation
from executor.wire import encode_msg, unpack


def _travel(record):
    """A record through the pipe's encoding and back, as the other process reads it."""
    return type(record).from_wire(unpack(encode_msg(record.to_wire())[4:]))


def test_records_survive_the_wire():
    req = RunRequest(format="call", program="def f(x):\n    return x\n", time_limit_s=1.0,
                     budget_s=4.0, output_limit=1024, limits={"memory_mb": 512},
                     fn_name="f", inputs=[[1], [2]])
    assert _travel(req) == req and req.n_tests == 2
    obs = RunObservation(tests=[TestObservation("ok", value=[1, 2], has_value=True),
                                TestObservation("error", err={"type": "ValueError",
                                                              "line": 2, "msg": "x"})],
                         tier="minimal", duration_s=0.5)
    assert _travel(obs) == obs
    assert _travel(Hello(ok=False, error="no sandbox")) == Hello(ok=False, error="no sandbox")


def test_a_returned_none_is_not_a_missing_value():
    # A call test that returned None carries the encoded value None; a record without a value
    # is malformed, and the judge must be able to tell the two apart.
    returned, missing = TestObservation("ok", value=None, has_value=True), TestObservation("ok")
    assert _travel(returned).encoded_value() is None
    with pytest.raises(KeyError):
        _travel(missing).encoded_value()


def test_fields_are_checked():
    with pytest.raises(TypeError, match="needs `program`"):
        RunRequest(format="call")
    with pytest.raises(TypeError, match="no field `colour`"):
        TestObservation(colour="red")
    a, b = RunObservation(), RunObservation()
    a.tests.append(TestObservation())
    assert b.tests == []  # a list default is each record's own


def test_the_zygote_holds_no_module_only_the_supervisor_needs():
    # Every module loaded before the zygote forks is in each program's memory and makes every
    # fork dearer: the typed records must not bring dataclasses (and inspect, ast, dis) there.
    code = ("import sys, executor.forkserver; "
            "print(sorted(m for m in ('dataclasses', 'inspect', 'ast', 'pickle', 'select') "
            "if m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
