"""The ground floor: the vocabulary every other package shares, importing nothing of the project.

`core.records`: problems, solutions, results, their JSONL files and the outcome vocabulary.
`core.config`: the config tree, one pydantic section per component, each setting described
once beside its definition; each component takes its own section as is.
`core.config_reading`: reading a config (YAML, `section.key=value` overrides, every problem
at once); `core.checks`: the checks across settings.
"""
