"""The project's error type for bad input.

:class:`InputError` is raised wherever iotgen finds a parameter, option, spec file or target it cannot use: the
message is one line naming what was wrong and what is allowed. Faces show it as such (the CLI: that line and
exit status 2); any other exception, a ``ValueError`` from numpy or pyarrow included, is a bug and keeps its
traceback (the CLI: exit status 1). It subclasses ``ValueError``, so ``except ValueError`` still catches it.
"""


class InputError(ValueError):
    """Bad input, detected before anything is written: the message names the parameter and what is allowed."""
