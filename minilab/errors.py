"""The one exception type the lab raises for things the user can fix."""


class LabError(Exception):
    """A problem with the user's input (file, flag, checkpoint): the CLI prints it on one line and exits 2."""
