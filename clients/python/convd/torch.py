"""convd.torch: RemoteConv2d, a drop-in for torch.nn.Conv2d whose forward and backward run
on a convd daemon.

It has nn.Conv2d's signature, attributes, initialisation and parameters (`weight`,
`bias`), so state_dicts load from one into the other and any torch optimizer trains it.
Each module owns one session, made by its first forward (POST /forward with the layer)
and deleted by close() or when the module is garbage collected. A forward sends the
weights only when they differ bit for bit from what the daemon holds, and then on the
forward itself (W/b, §8.2), so an optimizer step costs no extra request. Forwards that
need no gradient (no_grad, eval) leave the daemon's cached input alone (cache: false).
backward asks only for the gradients autograd needs (no dx for a first layer), from the
session's cache when it still holds this forward's input and weights, else statelessly
from the saved input and weights (a module applied twice in one graph, gradcheck, a
daemon restarted since). A session the daemon dropped (idle timeout) is made anew from
the module's weights, which stay the truth: training resumes after any pause.
"""
import math
import weakref

import torch
from torch import nn
from torch.nn import init
from torch.nn.modules.utils import _pair

from ._wire import decode_tensor
from .client import Client, Session
from .errors import Error, NoForwardCache, SessionExpired, SessionNotFound

__all__ = ["RemoteConv2d"]

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


def _np(t):
    return t.detach().cpu().contiguous().numpy()


def _torch(a, like):
    return torch.from_numpy(a).to(device=like.device)


def _bits(t):
    """t's bytes as integers, so -0.0 != 0.0 and a NaN equals itself."""
    return t.detach().view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def _delete_quietly(client, session_id):
    try:
        client.request("DELETE", f"/sessions/{session_id}")
    except (Error, OSError):
        pass  # the daemon drops idle sessions by itself; nothing to do at exit


class _RemoteConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, module):
        y, token = module._remote_forward(x, weight, bias, cache=True)
        ctx.module, ctx.token = module, token
        ctx.save_for_backward(x, weight, bias)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, bias = ctx.saved_tensors
        need = [n for n, k in (("dx", 0), ("dW", 1), ("db", 2))
                if ctx.needs_input_grad[k] and not (k == 2 and bias is None)]
        if not need:
            return None, None, None, None
        dx, dW, db = ctx.module._remote_backward(ctx.token, x, weight, bias, gy, need)
        return dx, dW, db, None


class RemoteConv2d(nn.Module):
    """torch.nn.Conv2d computed by a convd daemon.

    Arguments as nn.Conv2d (padding_mode must be "zeros"; device is where results go),
    plus url (default $CONVD_URL, else http://127.0.0.1:8080), api_key, or a shared
    convd.Client as client.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, *, url=None, api_key=None, client=None):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"RemoteConv2d supports padding_mode='zeros' only, not "
                             f"{padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation, self.groups, self.padding_mode = _pair(dilation), groups, padding_mode
        if self.padding == "same" and self.stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(
            (out_channels, in_channels // groups) + self.kernel_size, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        self.client = client if client is not None else Client(url, api_key)
        self._session = None
        self._sent = None       # bit patterns of (W, b) as the daemon holds them
        self._token = 0         # bumped whenever the daemon's cache or weights change
        self._finalizer = None

    def reset_parameters(self):
        # as nn.Conv2d, draw for draw: the same seed gives the same weights
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + f", url={self.client.url!r}"

    @property
    def session(self):
        """The daemon session (a convd.Session), or None before the first forward."""
        return self._session

    def close(self):
        """Deletes this module's session (a later forward makes a new one)."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._session, self._sent = None, None

    def __getstate__(self):
        st = self.__dict__.copy()
        st.update(_session=None, _sent=None, _finalizer=None)  # a copy makes its own session
        return st

    def forward(self, x):
        if x.dtype != self.weight.dtype:
            raise RuntimeError(f"Input type ({x.dtype}) and weight type ({self.weight.dtype}) "
                               f"should be the same")
        if x.dtype not in _DTYPES:
            raise TypeError(f"RemoteConv2d computes in float32 or float64, not {x.dtype}")
        grad = torch.is_grad_enabled() and (
            x.requires_grad or self.weight.requires_grad
            or (self.bias is not None and self.bias.requires_grad))
        if grad:
            return _RemoteConv2dFn.apply(x, self.weight, self.bias, self)
        with torch.no_grad():
            return self._remote_forward(x, self.weight, self.bias, cache=False)[0]

    # ---- the daemon side; called by _RemoteConv2dFn ----

    def _layer(self, weight):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"stride": list(self.stride), "padding": pad, "dilation": list(self.dilation),
                "groups": self.groups, "bias": self.bias is not None,
                "dtype": _DTYPES[weight.dtype]}

    def _remote_forward(self, x, weight, bias, cache):
        """(y, token): y from the daemon, pushing weights that changed; token names the
        daemon's state (cache and weights) this forward left behind."""
        s = self._session
        if s is not None and s.dtype != _DTYPES[weight.dtype]:
            self.close()  # .double()/.float() since the last forward: a new layer
            s = None
        bits = (_bits(weight).clone(), None if bias is None else _bits(bias).clone())
        y = None
        if s is not None:
            same_w = torch.equal(bits[0], self._sent[0])
            same_b = bias is None or torch.equal(bits[1], self._sent[1])
            try:
                y = s.forward(_np(x), cache=cache, W=None if same_w else _np(weight),
                              b=None if same_b else _np(bias))
            except (SessionExpired, SessionNotFound):
                self.close()  # idle too long, or a daemon that lost it: the weights are here
        if y is None:
            layer = self._layer(weight)
            ans, hdrs = self.client._call("POST", "/forward", {
                "layer": dict(layer, W=_np(weight), b=None if bias is None else _np(bias)),
                "x": _np(x), "cache": cache})
            sid = hdrs.get("X-Session-Id") or ans["session"]
            self._session = Session(self.client, sid, layer)
            self._finalizer = weakref.finalize(self, _delete_quietly, self.client, sid)
            y, same_w, same_b = decode_tensor(ans["y"]), False, False
        self._sent = bits
        if cache or not (same_w and same_b):
            self._token += 1
        return _torch(y, x), self._token

    def _remote_backward(self, token, x, weight, bias, gy, need):
        """(dx, dW, db) as torch tensors (None where not needed): from the session's cache
        when it holds this forward, else (or when the daemon lost it) statelessly."""
        delta = _np(gy)
        grads = None
        if token == self._token and self._session is not None:
            try:
                grads = self._session.backward(delta, need=need)
            except (SessionExpired, SessionNotFound, NoForwardCache):
                pass  # expired, or a restarted daemon without the input: send it
        if grads is None:
            layer = dict(self._layer(weight), W=_np(weight),
                         b=None if bias is None else _np(bias))
            grads = self.client.backward(_np(x), delta, layer=layer, need=need)
        return tuple(None if g is None else _torch(g, gy) for g in grads)
