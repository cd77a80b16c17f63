"""The five main commands, each a module with a `command()`: `fast-seg-train`,
`fast-seg-eval`, `fast-seg-export`, `fast-seg-compress` and `fast-seg-predict`
once the package is installed (pyproject's [project.scripts]), and the
`train.py`, `eval.py`, ... scripts at the top of a checkout, which call the
same `command()`."""
