"""What Grid'5000's Apache front proxy does before g5k-api sees a request: its error pages, and the body read.

The proxy answers malformed or oversized requests itself, with Apache's canned HTML pages, so g5k-api (and
here the Flask routes) only ever sees a whole body of bounded size, already in memory.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Iterable
from typing import Any, Final

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The real proxy keeps Apache's LimitRequestBody default (1 GiB since httpd 2.4.53, unlimited before), so a
# huge job there fails later, in OAR (a command past the kernel's 128 KiB argument limit cannot be exec'd).
# The largest legitimate request (a deployment with a few SSH keys) is a few kB: 1 MiB is ample.
MAX_BODY: Final = 1024 * 1024

# Apache httpd 2.4's status lines and canned texts (modules/http/http_protocol.c).
_PAGES: Final = {
    400: ("Bad Request", "<p>Your browser sent a request that this server could not understand.<br />\n</p>\n"),
    401: (
        "Unauthorized",
        "<p>This server could not verify that you\nare authorized to access the document\nrequested.  Either you "
        "supplied the wrong\ncredentials (e.g., bad password), or your\nbrowser doesn't understand how to supply\n"
        "the credentials required.</p>\n",
    ),
    408: ("Request Timeout", "<p>Server timeout waiting for the HTTP request from the client.</p>\n"),
    413: (
        "Request Entity Too Large",
        "The requested resource does not allow request data with {method} requests, or the amount of data "
        "provided in\nthe request exceeds the capacity limit.\n",
    ),
}
PAGE_TYPE: Final = "text/html; charset=iso-8859-1"
# The server puts here a callable that stops anything from reading the connection again: after a read
# timeout the socket cannot be read, and werkzeug would otherwise try to drain it after the answer.
DISCARD_INPUT: Final = "g5ksim.discard_input"


def proxy_page(status: int, method: str = "GET") -> str:
    """The HTML page Apache answers `status` with."""
    title, text = _PAGES[status]
    return (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
        f"<title>{status} {title}</title>\n</head><body>\n<h1>{title}</h1>\n"
        f"{text.format(method=html.escape(method))}</body></html>\n"
    )


class BodyTooLarge(Exception):
    """A body past MAX_BODY: the proxy's 413."""


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole request body, at most MAX_BODY bytes; OSError for a broken one (bad chunk, short read)."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        # Chunked: werkzeug's dechunking stream ends at the last chunk and raises OSError on a malformed one.
        body = stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BodyTooLarge
        return bytes(body)
    raw_length = environ.get("CONTENT_LENGTH") or "0"
    if not (raw_length.isascii() and raw_length.isdigit()):
        raise OSError(f"invalid Content-Length {raw_length!r}")
    length = int(raw_length)
    if length > MAX_BODY:
        raise BodyTooLarge
    body = stream.read(length) if length else b""
    if len(body) != length:
        raise OSError("request body shorter than its Content-Length")
    return bytes(body)


class BodyGuard:
    """Reads each request body in full before the application runs, within MAX_BODY and the socket timeout."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            body = _read_body(environ)
        except BodyTooLarge:
            return self._refuse(413, environ, start_response)
        except TimeoutError:
            discard = environ.get(DISCARD_INPUT)
            if discard is not None:
                discard()
            return self._refuse(408, environ, start_response)
        except OSError:
            return self._refuse(400, environ, start_response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(status: int, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        page = proxy_page(status, environ.get("REQUEST_METHOD", "GET")).encode("latin-1")
        headers = [("Content-Type", PAGE_TYPE), ("Content-Length", str(len(page)))]
        start_response(f"{status} {_PAGES[status][0]}", headers)
        return [page]
