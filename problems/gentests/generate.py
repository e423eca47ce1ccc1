"""`rltf gen-tests`: unit-test problems generated from plain Python source, run in the sandbox.

    rltf gen-tests --source DIR_OR_FILE [--source ...] --out problems.jsonl [--hf-out DIR]
                   [--report report.json] [--allow-bare] [--min-mutation-score 0.5]
                   [--workers 2] [--ray] [--config FILE] [section.key=value ...]

The automatic unit-test data of Gorinski et al. (arXiv 2310.13669), for any Python corpus,
typed or not:

1. scan: every file is read once for the calls it makes (`problems.gentests.callsites`), then
   its top-level functions become candidates (`problems.gentests.extract`), made standalone with
   the imports, helpers and constants they need; each parameter is typed from the first
   source that says (annotation, docstring, doctest, call site, default; see
   `problems.gentests.typeinfer`); near-identical functions are dropped as duplicates; functions
   without a docstring are dropped unless `--allow-bare`;
2. then, chunk by chunk (`problems.gentests.chunk`): runtime probing types what is still
   unknown; the reference records outputs on generated inputs in the sandbox; mutants steer
   which inputs become tests; a rerun on another fork-server drops nondeterministic
   functions; the executor pool judges the reference against its tests (it must pass all)
   and every mutant (the share rejected is the problem's mutation score).

Each finished chunk is written to the work folder (`--work-dir`, default `OUT.parts`), so a
run that is interrupted resumes where it stopped when the same command runs again (`--fresh`
starts over). The output is problems JSONL, and with `--hf-out` the same problems as a
Hugging Face `datasets` folder, which `datasets.load_from_disk` and
`rltf train data.source=jsonl data.train_file=DIR` both read. With `--ray` the sandboxes are
Ray actors on the cluster (`cluster.address`, or a local Ray instance): the project's
executor actors judge, and recorder actors (`rltf-gen-<i>`) record outputs
(`cluster/gentests_sandboxes.py`). The command line is `cluster/gentests_cmd.py`.

The report (JSON) counts functions found, kept, and dropped by reason (each function with its
reason), parameters by type source (and lists each function's parameters with their source,
`type_sources`), inputs dropped by cause, the reference pass rate, the mutation scores and the
wall time of each phase. Differences from the paper: the paper
generates tests for existing problems' reference programs; here any function with a
docstring becomes a problem, and the choice of tests is steered by mutants.
"""

from __future__ import annotations

import collections
import fnmatch
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from problems.gentests.callsites import CallIndex
from problems.gentests.extract import Candidate, Rejected, scan_module

DEFAULT_EXCLUDES = ("*/site-packages/*", "*/test/*", "*/tests/*", "*/testing/*",
                    "*/__pycache__/*", "*/idlelib/*", "*/turtledemo/*", "*/tkinter/*",
                    "*/ensurepip/*", "*/config-3*", "*/lib2to3/*", "*/_vendor/*",
                    "*/vendored/*", "*/_distutils/*", "*/test_*.py", "*/conftest.py")


@dataclass
class GenSettings:
    """Settings of one generation run; each documented once, here."""

    seed: int = 0                 # seeds every input draw and mutant sample (with the task id)
    per_function: int = 10        # most tests a problem keeps
    pool_factor: int = 3          # inputs tried per test kept
    min_tests: int = 3            # fewer usable inputs than this drops the function
    infer_types: bool = True      # type unannotated parameters (docstring, doctest, call
                                  # sites, defaults); False: annotations only
    probe: bool = True            # runtime probing for parameters still untyped
    allow_bare: bool = False      # keep functions without a docstring
    extra_imports: frozenset = frozenset()  # top-level packages allowed besides the stdlib
    time_limit_s: float = 0.5     # per-input limit while recording (traced, so slower than
                                  # the tests run later: judging allows twice this, >= 1 s)
    probe_time_limit_s: float = 0.5   # per call while probing types
    mutant_time_limit_s: float = 0.25  # per call of a mutant (at least 5x the reference's time
                                       # when judging)
    program_budget_s: float = 10.0  # one sandboxed run's budget (a mutant bundle's calls)
    max_mutants: int = 24         # mutants drawn per function
    guide_fraction: float = 0.5   # share of them that steer the choice of tests; the others
                                  # stay unseen, so the score also shows how tests generalise
    min_mutation_score: float = 0.0  # drop problems whose tests reject fewer mutants
    max_test_chars: int = 1000    # a longer test is dropped as an input
    chunk_size: int = 64          # functions per chunk: the unit of resuming
    limit: int | None = None      # stop after this many candidates (quick looks)

    def fingerprint(self) -> dict:
        """The settings that change the output (a resumed run must share them)."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("limit",)}
        d["extra_imports"] = sorted(self.extra_imports)
        return d


@dataclass
class GenReport:
    """What a run found, kept and dropped (with the reason for each function dropped)."""

    sources: list[str] = field(default_factory=list)
    files_scanned: int = 0
    files_unparseable: int = 0
    functions_found: int = 0
    functions_with_params: int = 0
    kept: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    dropped_functions: list[dict] = field(default_factory=list)
    inputs: collections.Counter = field(default_factory=collections.Counter)
    counts: collections.Counter = field(default_factory=collections.Counter)
    reference: collections.Counter = field(default_factory=collections.Counter)
    type_sources: dict = field(default_factory=dict)  # task id -> {parameter: source}
    timings_s: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def drop(self, task_id: str, reason: str, detail: str = "", path: str = "", line: int = 0):
        self.dropped[reason] += 1
        self.dropped_functions.append({"task_id": task_id, "reason": reason,
                                       "detail": detail[:300], "path": path, "line": line})

    def part(self) -> dict:
        """What one chunk adds (saved with it, merged on resume)."""
        return {"dropped_functions": self.dropped_functions, "inputs": dict(self.inputs),
                "counts": dict(self.counts), "reference": dict(self.reference),
                "type_sources": self.type_sources, "timings_s": self.timings_s}

    def merge(self, part: dict) -> None:
        for d in part["dropped_functions"]:
            self.drop(d["task_id"], d["reason"], d["detail"], d["path"], d["line"])
        self.inputs.update(part["inputs"])
        self.counts.update(part["counts"])
        self.reference.update(part["reference"])
        self.type_sources.update(part["type_sources"])
        for k, v in part["timings_s"].items():
            self.timings_s[k] = self.timings_s.get(k, 0.0) + v


# -- 1. scan --------------------------------------------------------------------------------
def discover(sources: list[str], excludes=DEFAULT_EXCLUDES) -> list[tuple[str, str, bool]]:
    """(path, dotted module name, is_package) of every .py file under the sources."""
    out = []
    for src in sources:
        root = Path(src).resolve()
        if root.is_file():
            out.append((str(root), root.stem, False))
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = Path(path).relative_to(root)
                if not name.endswith(".py") or any(fnmatch.fnmatch(f"/{rel}", g)
                                                   for g in excludes):
                    continue  # globs match the path below the source, with a leading /
                rel = rel.with_suffix("")
                parts = list(rel.parts)
                is_pkg = parts[-1] == "__init__"
                if is_pkg:
                    parts = parts[:-1]
                if parts and all(p.isidentifier() for p in parts):
                    out.append((path, ".".join(parts), is_pkg))
    return out


def _read(path: str):
    import ast

    text = Path(path).read_text(encoding="utf-8")
    return text, ast.parse(text)


def _has_params(node) -> bool:
    import ast

    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    a = node.args
    return bool(a.posonlyargs or a.args or a.kwonlyargs or a.vararg or a.kwarg)


def scan(files, st: GenSettings, report: GenReport) -> list[Candidate]:
    """Candidates of every file, after one pass that indexes the corpus's call sites."""
    calls = CallIndex()
    parsed = []
    for path, module, is_pkg in files:
        try:
            text, tree = _read(path)
            calls.add_module(text, module, is_pkg, tree)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            report.files_unparseable += 1
            continue
        parsed.append((path, module, is_pkg))
        report.functions_with_params += sum(_has_params(n) for n in tree.body)
    report.extra["call_sites_indexed"] = len(calls)
    candidates: list[Candidate] = []
    seen_keys: dict[str, str] = {}
    seen_ids: set[str] = set()
    for path, module, is_pkg in parsed:
        try:
            text = Path(path).read_text(encoding="utf-8")
            found, items = scan_module(text, module, path, is_pkg, st.infer_types,
                                       st.extra_imports, calls, st.allow_bare)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            report.files_unparseable += 1
            continue
        report.files_scanned += 1
        report.functions_found += found
        for item in items:
            if isinstance(item, Rejected):
                report.drop(item.task_id, item.reason, item.detail, item.path, item.lineno)
            elif item.key in seen_keys:
                report.drop(item.task_id, "duplicate", f"same normalised AST as "
                            f"{seen_keys[item.key]}", item.path, item.lineno)
            else:
                seen_keys[item.key] = item.task_id
                while item.task_id in seen_ids:  # the same module name under two sources
                    item.task_id += "_"
                seen_ids.add(item.task_id)
                candidates.append(item)
    return candidates


# -- the pipeline ---------------------------------------------------------------------------
def generate(sources: list[str], st: GenSettings, excludes=DEFAULT_EXCLUDES,
             executor_cfg=None, sandboxes=None, work_dir: str | Path | None = None,
             fresh: bool = False, progress=None) -> tuple[list, GenReport]:
    """(problems, report) of the sources. With `work_dir`, every finished chunk is saved
    there and chunks already there (same settings, same functions) are not run again.
    `sandboxes(executor_cfg)` opens the sandboxes (`problems.gentests.sandboxes.Sandboxes`);
    by default `LocalSandboxes`, `cluster.gentests_sandboxes.RaySandboxes` on a Ray cluster."""
    from core.config import ExecutorConfig
    from problems.gentests.chunk import run_chunk
    from problems.gentests.sandboxes import LocalSandboxes
    from problems.gentests.resume import ChunkStore

    report = GenReport(sources=[str(Path(s).resolve()) for s in sources])
    t0 = time.monotonic()
    cands = scan(discover(sources, excludes), st, report)
    if st.limit is not None:
        for c in cands[st.limit:]:
            report.drop(c.task_id, "over --limit", "", c.path, c.lineno)
        cands = cands[: st.limit]
    report.timings_s["scan"] = time.monotonic() - t0
    chunks = [cands[i:i + st.chunk_size] for i in range(0, len(cands), st.chunk_size)]
    store = ChunkStore(work_dir, st.fingerprint(), fresh) if work_dir is not None else None
    problems: list = []
    todo = []
    for k, chunk in enumerate(chunks):
        saved = store.load(k, [c.task_id for c in chunk]) if store else None
        if saved is None:
            todo.append((k, chunk))
            continue
        probs, part = saved
        problems.append((k, probs))
        report.merge(part)
        report.counts["chunks_resumed"] += 1
    if todo:
        base = executor_cfg or ExecutorConfig(workers=2)
        cfg = base.model_copy(update={"time_limit_s": max(1.0, 2 * st.time_limit_s),
                                      "program_budget_s": st.program_budget_s})
        with (sandboxes or LocalSandboxes)(cfg) as sb:
            report.extra["isolation"] = sb.isolation
            for k, chunk in todo:
                part = GenReport()
                probs = run_chunk(chunk, sb, st, part)
                if store:
                    store.save(k, [c.task_id for c in chunk], probs, part.part())
                problems.append((k, probs))
                report.merge(part.part())
                if progress is not None:
                    progress(len(chunk))
    problems.sort(key=lambda kp: kp[0])
    final = [p for _, ps in problems for p in ps]
    report.kept = len(final)
    report.timings_s["total"] = time.monotonic() - t0
    return final, report


def summary(report: GenReport, problems: list) -> dict:
    n_tests = [len(p.tests) for p in problems]
    ref = report.reference
    scores = [p.metadata["mutation"]["score"] for p in problems
              if p.metadata.get("mutation", {}).get("score") is not None]
    by_source = collections.Counter(s for p in problems
                                    for s in set(p.metadata["type_sources"].values()))
    params = collections.Counter(s for p in problems for s in p.metadata["type_sources"].values())
    typed = collections.Counter(s for srcs in report.type_sources.values() for s in srcs.values())
    doctests = collections.Counter()
    for p in problems:
        doctests.update(p.metadata.get("doctests", {}))
    return {
        "sources": report.sources, "files_scanned": report.files_scanned,
        "files_unparseable": report.files_unparseable,
        "functions_found": report.functions_found,
        "functions_with_params": report.functions_with_params, "kept": report.kept,
        "kept_share_of_functions_with_params": report.kept / report.functions_with_params
        if report.functions_with_params else None,
        "dropped_total": sum(report.dropped.values()),
        "dropped": dict(report.dropped.most_common()),
        "kept_by_type_source": dict(by_source.most_common()),
        "kept_params_by_type_source": dict(params.most_common()),
        "params_by_type_source": dict(typed.most_common()),  # every function typed
        "kept_typed": dict(collections.Counter(p.metadata["typed"] for p in problems)),
        "doctest_examples": dict(doctests),  # of kept problems: ran, and read as written
        "kept_with_docstring": sum(bool(p.metadata["has_docstring"]) for p in problems),
        "inputs": dict(report.inputs), "counts": dict(report.counts),
        "tests_total": sum(n_tests),
        "tests_raising": sum(p.metadata.get("tests_raising", 0) for p in problems),
        "tests_per_problem": {"mean": sum(n_tests) / len(n_tests) if n_tests else 0.0,
                              "min": min(n_tests, default=0), "max": max(n_tests, default=0)},
        "mutation_score": {"mean": sum(scores) / len(scores) if scores else None,
                           "mutants": report.counts.get("mutants", 0),
                           "killed": report.counts.get("mutants_killed", 0)},
        "reference_check": {"programs": ref.get("programs", 0), "passed": ref.get("passed", 0),
                            "pass_rate_before_drop": ref["passed"] / ref["programs"]
                            if ref.get("programs") else None},
        "timings_s": {k: round(v, 2) for k, v in report.timings_s.items()},
        "isolation": report.extra.get("isolation"),
    }
