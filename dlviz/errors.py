"""The one exception type for user mistakes: it carries the JSON path and a sentence a person can act on."""

from dlviz.text import clean


class UserError(Exception):
    """A problem with what the user gave us (a preset, a file, a setting), never a bug in dlviz.

    `path` is the JSON path of the offending value (``model.layers[3].kernel_size``) or "" when the
    problem is the document as a whole; `message` says what is wrong and what to do about it.
    """

    def __init__(self, path: str, message: str):
        path, message = clean(path), clean(message)  # one line, even for a key like "\n"
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message

    def __reduce__(self):  # so that it crosses process boundaries and caches intact
        return (type(self), (self.path, self.message))


class FieldError(ValueError):
    """A validator's complaint about part of the value it checks. `loc` is the path below that value (``("type",)``,
    ``(3,)``), empty for the value itself; it travels through pydantic as data and is joined to the field's own path."""

    def __init__(self, message: str, loc: tuple = ()):
        super().__init__(message)
        self.message = message
        self.loc = tuple(loc)

    def __reduce__(self):
        return (type(self), (self.message, self.loc))

    def user_error(self, prefix: str) -> "UserError":
        """This complaint as a UserError under the JSON path `prefix`."""
        return UserError(json_path([*([prefix] if prefix else []), *self.loc]), self.message)


def json_path(parts) -> str:
    """Render ('model', 'layers', 3, 'kernel_size') as model.layers[3].kernel_size."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def did_you_mean(word: str, options) -> str:
    """A ' did you mean X?' suffix when one of `options` is close to `word`, else ''."""
    import difflib

    options = list(options)
    lowered = {o.lower(): o for o in options}
    if isinstance(word, str) and word.lower() in lowered:
        return f"; did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


QUOTE_CHARS = 40  # the most characters of a user's value an error or caption repeats


def clip(value, limit: int = QUOTE_CHARS) -> str:
    """A user's value cut to its first `limit` characters, with an ellipsis when cut: a table cell or a file name can be
    megabytes long, and a message quoting it whole floods the page (and repeats whatever the value holds)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
