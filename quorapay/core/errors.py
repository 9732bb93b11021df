"""The two error families of Quorapay (h11's local/remote split)."""


class QuorapayError(Exception):
    """Base class for every error Quorapay raises on purpose."""


class LocalError(QuorapayError):
    """Our own code broke a core contract (e.g. step() while a Ready is outstanding). A bug."""


class PeerError(QuorapayError):
    """A peer sent something undecodable or illegal. Close that link; keep running."""
