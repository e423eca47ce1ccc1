"""Compiling a program's text, in the fork-server's supervisor, before its child is forked.

A program that does not compile is answered with its syntax error: the error's line, and
whether the text ends inside an unfinished construct (`truncated`: a generation cut off by the
token limit). A standard-input program whose only fault is a top-level `return` is compiled as
APPS's harness runs such programs (`_compile_as_main`).
"""

from __future__ import annotations

from executor.harness import PROGRAM_FILE


def _compile_as_main(program: str):
    """A standard-input program that ends early with a top-level `return`, compiled as APPS's
    harness runs such programs: its body inside a function that is then called. Every name the
    body binds at its top level is declared global there, so the program's names stay module
    names (its functions' `global` statements still work); `import *` stays outside. Lines
    are unchanged. None when the program still does not compile."""
    import ast

    try:
        tree = ast.parse(program, PROGRAM_FILE)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    hoisted = [s for s in tree.body if isinstance(s, ast.ImportFrom)
               and any(a.name == "*" for a in s.names)]
    body = [s for s in tree.body if not any(s is h for h in hoisted)]
    names: set[str] = set()
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp,
              ast.SetComp, ast.DictComp, ast.GeneratorExp)
    todo: list[ast.AST] = list(body)
    while todo:  # the names bound in the body's own scope (not in functions it defines)
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.AnnAssign):
            return None  # an annotated name cannot be declared global
        if not isinstance(node, scopes):
            todo.extend(ast.iter_child_nodes(node))
    if not body:
        return None
    first = body[0]
    where = {"lineno": first.lineno, "col_offset": 0, "end_lineno": first.lineno,
             "end_col_offset": 0}
    main = "__rltf_main__"
    inner = ([ast.Global(names=sorted(names), **where)] if names else []) + body
    fn = ast.FunctionDef(name=main, args=ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
        defaults=[]), body=inner, decorator_list=[], returns=None, type_comment=None, **where)
    call = ast.Expr(ast.Call(ast.Name(main, ast.Load(), **where), [], [], **where), **where)
    tree.body = hoisted + [fn, call]
    try:
        return compile(tree, PROGRAM_FILE, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, OverflowError):
        return None


def compile_program(program: str, fmt: str | None = None):
    """(code, None) or (None, syntax error record with `truncated`). A `stdio` program whose
    only fault is a top-level `return` runs as APPS's harness runs it (`_compile_as_main`)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return compile(program, PROGRAM_FILE, "exec", dont_inherit=True), None
        except SyntaxError as exc:
            if fmt == "stdio" and exc.msg == "'return' outside function":
                code = _compile_as_main(program)
                if code is not None:
                    return code, None
            return None, _syntax_record(program, exc)
        except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
            return None, _syntax_record(program, exc)


def _syntax_record(program: str, exc: BaseException) -> dict:
    import codeop

    line = getattr(exc, "lineno", None)
    msg = getattr(exc, "msg", None) or str(exc)
    truncated = False
    if isinstance(exc, SyntaxError):
        try:
            truncated = codeop.compile_command(program, "<program>", "exec") is None
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            truncated = False
    return {"type": type(exc).__name__ if isinstance(exc, SyntaxError) else "SyntaxError",
            "line": line, "msg": str(msg)[:400], "truncated": truncated}
