"""The one exception type a user is meant to read."""


class UserError(Exception):
    """A problem with the user's input or environment, reported as one paragraph, no traceback.

    The message says what is wrong and what to do about it.
    """
