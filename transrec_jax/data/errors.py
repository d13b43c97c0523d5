"""The one exception type the data layer raises for bad input."""


class DataError(ValueError):
    """Bad input data: the message is one line naming the file, line or key and what was expected."""
