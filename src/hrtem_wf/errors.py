"""The error for inputs a job cannot use; a module of its own, importing nothing, so that raising
it adds nothing to a stage's imports or code version (hrtem_wf.codeversion)."""


class InputError(ValueError):
    """Inputs or options a job cannot use as given (a file that is not there, a model of another
    task, an input its block needs but the job lacks): `hrtem-wf` prints the message in one line,
    without a traceback, and exits 1."""
