"""The one error type that decoding untrusted compressed payloads raises."""


class PayloadError(Exception):
    """A peer's payload is malformed; the message says what was wrong.

    Raised only for remote input.  Misuse of the encoders by local code
    raises ``ValueError`` instead; the two types share no base but
    ``Exception``, so blame is in the type.
    """
