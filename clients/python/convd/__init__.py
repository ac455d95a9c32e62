"""convd: a Python client for the convd daemon (a 2-D convolution layer served over HTTP).

    import numpy as np, convd
    with convd.Client("http://127.0.0.1:8080").session(in_channels=3, out_channels=8,
                                                      kernel_size=3, padding=1) as s:
        y = s.forward(np.random.rand(2, 3, 32, 32))
        dx, dW, db = s.backward(np.ones_like(y))

`convd.torch.RemoteConv2d` is a drop-in for torch.nn.Conv2d that runs on the daemon
(importing it needs PyTorch; this module needs only NumPy).
"""
from .client import Client, Session
from .errors import (ConnectionFailed, Error, Internal, InvalidArgument, InvalidJSON,
                     InvalidLayer, InvalidTensor, MethodNotAllowed, NoForwardCache,
                     NonFiniteResult, NotFound, OutOfMemory, PayloadTooLarge, SessionExpired,
                     SessionNotFound, ShapeMismatch, ShuttingDown, TooManySessions, Unauthorized,
                     UnsupportedMediaType, WrongNode, error_class)

__version__ = "1.1.0"
__all__ = [
    "Client", "Session", "Error", "ConnectionFailed", "InvalidJSON", "InvalidTensor",
    "InvalidLayer", "ShapeMismatch", "InvalidArgument", "Unauthorized", "NotFound",
    "SessionNotFound", "MethodNotAllowed", "NoForwardCache", "SessionExpired",
    "PayloadTooLarge", "UnsupportedMediaType", "WrongNode", "NonFiniteResult",
    "TooManySessions", "Internal", "ShuttingDown", "OutOfMemory", "error_class",
    "__version__",
]
