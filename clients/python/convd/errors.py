"""convd.errors: one exception class per error code of the HTTP contract (docs/api.md §5, §8).

Every error the daemon answers with is raised as the subclass registered for its "code",
carrying the HTTP status, the code and the server's message (which says what to fix).
A code this client does not know yet is raised as the base class `Error`, so newer
daemons never break older clients. Network failures are `ConnectionFailed`, which is
also a builtin `ConnectionError`.
"""

__all__ = [
    "Error", "ConnectionFailed", "InvalidJSON", "InvalidTensor", "InvalidLayer",
    "ShapeMismatch", "InvalidArgument", "Unauthorized", "NotFound", "SessionNotFound",
    "MethodNotAllowed", "NoForwardCache", "SessionExpired", "PayloadTooLarge",
    "UnsupportedMediaType", "WrongNode", "NonFiniteResult", "TooManySessions",
    "Internal", "ShuttingDown", "OutOfMemory", "error_class",
]


class Error(Exception):
    """An error answer from convd (or, for ConnectionFailed, no answer at all).

    status: the HTTP status (0 when no answer arrived); code: the contract's code string
    ("shape_mismatch", ...); message: the server's explanation; retry_after: seconds from
    a Retry-After header, else None.
    """

    code = None

    def __init__(self, message, status=0, code=None, retry_after=None):
        super().__init__(message)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def __str__(self):
        if self.status:
            return f"HTTP {self.status} {self.code}: {self.message}"
        return self.message


class ConnectionFailed(Error, ConnectionError):
    """The daemon could not be reached, or the connection broke before the answer."""
    code = "connection_failed"


class InvalidJSON(Error):
    """400: the body is not UTF-8 JSON."""
    code = "invalid_json"


class InvalidTensor(Error):
    """400: a tensor's encoding is bad (ragged, bad base64, not finite in the dtype)."""
    code = "invalid_tensor"


class InvalidLayer(Error):
    """400: missing, contradictory or out-of-range layer fields, or W/b of the wrong shape."""
    code = "invalid_layer"


class ShapeMismatch(Error):
    """400: a well-formed x or delta of the wrong shape."""
    code = "shape_mismatch"


class InvalidArgument(Error):
    """400: any other bad request (unknown field, bad lr or need)."""
    code = "invalid_argument"


class Unauthorized(Error):
    """401: an API key is configured and the request lacks it."""
    code = "unauthorized"


class NotFound(Error):
    """404: unknown path."""
    code = "not_found"


class SessionNotFound(Error):
    """404: a session id this daemon never issued, or deleted."""
    code = "session_not_found"


class MethodNotAllowed(Error):
    """405: the path exists, the method does not."""
    code = "method_not_allowed"


class NoForwardCache(Error):
    """409: backward on a session with no cached forward."""
    code = "no_forward_cache"


class SessionExpired(Error):
    """410: the daemon dropped the session for idleness or eviction."""
    code = "session_expired"


class PayloadTooLarge(Error):
    """413: body, tensor or session memory over the configured limits."""
    code = "payload_too_large"


class UnsupportedMediaType(Error):
    """415: a body declared as something other than JSON."""
    code = "unsupported_media_type"


class WrongNode(Error):
    """421: the session lives on another node; name it in X-Session-Id or the path."""
    code = "wrong_node"


class NonFiniteResult(Error):
    """422: the result overflowed to inf/nan."""
    code = "non_finite_result"


class TooManySessions(Error):
    """429: the session limit is reached."""
    code = "too_many_sessions"


class Internal(Error):
    """500: the daemon failed (out of memory, or a bug)."""
    code = "internal"


class ShuttingDown(Error):
    """503: the daemon is draining."""
    code = "shutting_down"


class OutOfMemory(Error):
    """503: the daemon's memory budget is spent; retry after retry_after seconds."""
    code = "out_of_memory"


_BY_CODE = {cls.code: cls for cls in (
    InvalidJSON,
    InvalidTensor,
    InvalidLayer,
    ShapeMismatch,
    InvalidArgument,
    Unauthorized,
    NotFound,
    SessionNotFound,
    MethodNotAllowed,
    NoForwardCache,
    SessionExpired,
    PayloadTooLarge,
    UnsupportedMediaType,
    WrongNode,
    NonFiniteResult,
    TooManySessions,
    Internal,
    ShuttingDown,
    OutOfMemory,
)}


def error_class(code):
    """The exception class for a contract code; `Error` for a code this client does not know."""
    return _BY_CODE.get(code, Error)
