"""Broken programs with the error_type and error_line the executor must report.

Lines are 1-based in the program as given. Runtime errors point at the deepest frame inside
the program; syntax errors at the SyntaxError's own line; timeouts at the running line.
"""

import pytest

from core.records import Problem, Solution

CALL = Problem(task_id="t", prompt="", format="call", fn_name="f", time_limit_s=0.5,
               tests=[{"input": [3], "output": 3}])
STDIO = Problem(task_id="s", prompt="", format="stdio", time_limit_s=0.5,
                tests=[{"input": "3\n", "output": "3\n"}])

# (program, expected outcome, error_type, error_line, truncated)
TABLE = [
    ("def f(x):\n    return y\n", "runtime_error", "NameError", 2, False),
    ("def f(x):\n    a = [1]\n    return a[x]\n", "runtime_error", "IndexError", 3, False),
    ("def f(x):\n    return {}[x]\n", "runtime_error", "KeyError", 2, False),
    ("def f(x):\n    return x / 0\n", "runtime_error", "ZeroDivisionError", 2, False),
    ("def f(x):\n    return x + 'a'\n", "runtime_error", "TypeError", 2, False),
    ("def f(x):\n    return int('x')\n", "runtime_error", "ValueError", 2, False),
    ("def f(x):\n    return x.upper()\n", "runtime_error", "AttributeError", 2, False),
    ("import no_such_module_here\ndef f(x):\n    return x\n", "runtime_error",
     "ModuleNotFoundError", 1, False),
    ("def g(n):\n    return g(n + 1)\n\ndef f(x):\n    return g(0)\n", "runtime_error",
     "RecursionError", 2, False),
    ("def helper(v):\n    return v[10]\n\ndef f(x):\n    return helper([x])\n", "runtime_error",
     "IndexError", 2, False),
    ("def f(x):\n    assert x < 0\n    return x\n", "runtime_error", "AssertionError", 2, False),
    ("def f(x):\n    raise RuntimeError('boom')\n", "runtime_error", "RuntimeError", 2, False),
    ("x = 1\ndef f(x):\n    return sorted([1, 'a'])\n", "runtime_error", "TypeError", 3, False),
    ("def f(x):\n    it = iter([])\n    return next(it)\n", "runtime_error", "StopIteration", 3,
     False),
    ("def f(x):\n    return len(bytearray(10 ** 12))\n", "memory_error", "MemoryError", 2, False),
    ("def f(x):\n    while True:\n        x += 1\n", "timeout", "Timeout", None, False),
    # syntax errors: the SyntaxError's own line
    ("def f(x):\n    return x +\n", "syntax_error", "SyntaxError", 2, False),
    ("def f(x)\n    return x\n", "syntax_error", "SyntaxError", 1, False),
    ("def f(x):\n    y = 1\n      return x\n", "syntax_error", "IndentationError", 3, False),
    ("def f(x):\nreturn x\n", "syntax_error", "IndentationError", 2, False),
    ("def f(x):\n    if x = 1:\n        return x\n", "syntax_error", "SyntaxError", 2, False),
    ("def f(x):\n    return x\n  y = 2\n", "syntax_error", "IndentationError", 3, False),
    ("def f(x):\n    s = 'abc\n    return x\n", "syntax_error", "SyntaxError", 2, False),
    # truncated generations: the program ends inside an open construct
    ("def f(x):\n    return max(x,\n", "syntax_error", "SyntaxError", 2, True),
    ("def f(x):\n    return [1, 2,\n        3\n", "syntax_error", "SyntaxError", 2, True),
    ("def f(x):\n    '''doc\n    return x\n", "syntax_error", "SyntaxError", 2, True),
    ("def f(x):\n    for i in range(x):\n", "syntax_error", "IndentationError", 2, True),
]


@pytest.mark.parametrize("program,outcome,etype,line,truncated", TABLE)
def test_error_type_and_line(worker, program, outcome, etype, line, truncated):
    r = worker.run(CALL, Solution(task_id="t", completion=program))
    assert r.outcome == outcome, r
    assert r.error_type == etype, r
    if line is not None:
        assert r.error_line == line, r
    else:
        assert r.error_line in (2, 3)
    assert r.truncated == truncated


def test_table_is_large_enough():
    assert len(TABLE) >= 20


def test_stdio_runtime_error_line(worker):
    r = worker.run(STDIO, Solution(task_id="s", completion="n = int(input())\nprint(n)\nprint(1 / 0)\n"))
    assert (r.outcome, r.error_type, r.error_line) == ("runtime_error", "ZeroDivisionError", 3)
