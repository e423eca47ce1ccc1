"""`rltf gen-tests`: unit-test problems generated from plain Python source (see `generate`).
Its command line is `cluster/gentests_cmd.py`.

One idea a module, in the order a function goes through them:

    generate      the pipeline: settings, scan, chunks, report (GenSettings, generate, summary)
    scopes        Python's scoping rules: which module names a statement reads
    standalone    a top-level function made standalone with what it needs
    callsites     calls of each function elsewhere in the corpus, with literal arguments
    docstrings    what a docstring says about parameter types and example calls
    typeinfer     types of unannotated parameters from the code around a function
    extract       the static half: candidates found in a module
    specs         type specs from annotations and simple defaults
    inputs        seeded input values for type specs
    literals      values written as Python source that rebuilds them exactly
    rows          argument rows for one candidate
    probe         the recording wrapper run in the sandbox: what a call returns and does
    probe_types   runtime probing of parameter types no source gave
    sandboxes     the recorders and the executor pool the sandboxed stages use (local;
                  `cluster/gentests_sandboxes.py` runs them as Ray actors)
    mutants       small faults of a reference solution its tests should notice
    selection     from recorded calls to unit tests: which inputs to keep, their asserts
    chunk         one chunk of candidates through the sandboxed stages
    resume        the work folder: finished chunks, so a rerun resumes
    dataset       problems as a Hugging Face `datasets` folder; one reader of problem files
"""
