"""The engine's one error: a query it cannot parse or evaluate."""


class PromQLError(Exception):
    """A PromQL query the engine cannot parse or evaluate; the message says what and where."""
