"""A base for objects that own C handles: `with` closes them, and so does garbage collection."""


class Closing:
    """Subclasses define close(), which must be safe to call twice (and on a half-built object)."""

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
