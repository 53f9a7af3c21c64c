"""Accept a client certificate that does not verify, and remember why (OpenSSL's verify callback).

Follows Postfix's tls_server(3) and tls_verify(3): with ``smtpd_tls_ask_ccert`` Postfix
asks for a client certificate and completes the handshake whatever its chain, then
calls the connection ``Trusted`` or ``Untrusted`` and logs ``certificate verification
failed for CLIENT: REASON``; ``check_ccert_access`` and ``permit_tls_clientcerts`` match
the fingerprint of an untrusted certificate too. Python's ``ssl`` module aborts the
handshake instead (it has no verify callback), so this module installs one through
``ctypes`` on the ``SSL_CTX`` of an ``ssl.SSLContext``: OpenSSL's
``SSL_CTX_set_verify(3)`` with a callback that records the first failure (by
``X509_verify_cert_error_string(3)``) for the connection and accepts the certificate.

Where the callback cannot be installed (a libssl without these symbols), ``install``
returns False and the context keeps Python's behaviour: an untrusted client
certificate fails the handshake (docs/decisions.md).
"""

from __future__ import annotations

import ctypes
import ssl
import sys
import threading
from collections.abc import Callable

# ssl.CERT_OPTIONAL's OpenSSL mode: SSL_VERIFY_PEER alone (a certificate is asked for,
# none is demanded).
_SSL_VERIFY_PEER = 0x01

_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()
#: Failures by the address of the ``_ssl._SSLSocket`` whose handshake met them; read
#: (and dropped) once by ``verify_error``. Bounded: a handshake that dies after the
#: callback leaves its entry, and the oldest go first.
_failures: dict[int, str] = {}
_MAX_FAILURES = 4096


class _LibSsl:
    """The few libssl/libcrypto functions the callback needs (from ``_ssl``'s libssl)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        self.set_verify = lib.SSL_CTX_set_verify
        self.set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
        self.set_verify.restype = None
        self.store_ex_data = lib.X509_STORE_CTX_get_ex_data
        self.store_ex_data.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.store_ex_data.restype = ctypes.c_void_p
        self.ssl_idx = lib.SSL_get_ex_data_X509_STORE_CTX_idx
        self.ssl_idx.argtypes = []
        self.ssl_idx.restype = ctypes.c_int
        self.ssl_ex_data = lib.SSL_get_ex_data
        self.ssl_ex_data.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.ssl_ex_data.restype = ctypes.c_void_p
        self.get_error = lib.X509_STORE_CTX_get_error
        self.get_error.argtypes = [ctypes.c_void_p]
        self.get_error.restype = ctypes.c_int
        self.error_string = lib.X509_verify_cert_error_string
        self.error_string.argtypes = [ctypes.c_long]
        self.error_string.restype = ctypes.c_char_p
        self.get_verify_mode = lib.SSL_CTX_get_verify_mode
        self.get_verify_mode.argtypes = [ctypes.c_void_p]
        self.get_verify_mode.restype = ctypes.c_int


def _load() -> _LibSsl | None:
    try:
        return _LibSsl()
    except (OSError, AttributeError):
        return None


_lib = _load()


def _record(preverify_ok: int, store: int | None) -> int:
    """The verify callback: note the first failure of the connection, accept."""
    if preverify_ok or _lib is None or not store:
        return 1
    try:
        ssl_ptr = _lib.store_ex_data(store, _lib.ssl_idx())
        # Python's _ssl keeps its _SSLSocket as the SSL's app data (ex_data index 0).
        owner = _lib.ssl_ex_data(ssl_ptr, 0) if ssl_ptr else None
        if owner:
            reason = (_lib.error_string(_lib.get_error(store)) or b"unknown").decode(
                "ascii", "replace")
            with _lock:
                if owner not in _failures:
                    if len(_failures) >= _MAX_FAILURES:
                        del _failures[next(iter(_failures))]
                    _failures[owner] = reason
    except Exception:  # never raise through OpenSSL: accept and move on
        return 1
    return 1


_callback: Callable[[int, int | None], int] = _VerifyCallback(_record)


def install(context: ssl.SSLContext) -> bool:
    """Make ``context`` (a server context with ``verify_mode`` CERT_OPTIONAL) accept a
    client certificate whatever its chain, the failure kept for ``verify_error``.
    Returns False when libssl could not be reached (the context is left as it was)."""
    if _lib is None:
        return False
    # PySSLContext starts with its SSL_CTX pointer right after the object header.
    ctx_ptr = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not ctx_ptr or sys.implementation.name != "cpython":
        return False
    # The pointer must be this context's: OpenSSL reports the mode Python set on it.
    if (context.verify_mode != ssl.CERT_OPTIONAL
            or _lib.get_verify_mode(ctx_ptr) != _SSL_VERIFY_PEER):
        return False
    _lib.set_verify(ctx_ptr, _SSL_VERIFY_PEER, _callback)
    return True


def verify_error(obj: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """Why the client certificate of a finished handshake did not verify (OpenSSL's
    text, ``self-signed certificate``), or None when it did or none was sent."""
    inner = getattr(obj, "_sslobj", None)
    if inner is None:
        return None
    with _lock:
        return _failures.pop(id(inner), None)


def forget(obj: ssl.SSLObject | ssl.SSLSocket) -> None:
    """Drop what was recorded for a handshake that failed."""
    verify_error(obj)
