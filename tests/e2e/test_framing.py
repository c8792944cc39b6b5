"""Request framing (issue 7, point 6): a request whose body framing is ambiguous, the ground of
request smuggling, is refused and its connection closed, so that nothing hidden in its body is
ever read as a request of its own. Raw sockets: requests would never send these.
"""

import re
import socket
import time

import pytest

from conftest import read_all


HIDDEN = b"GET /smuggled-request HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(port, raw, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return read_all(s, timeout)


def assert_refused_and_closed(sw, data, status=400):
    """One answer with `status` and a JSON error, the connection closed after it, and the request
    hidden in the body never answered nor logged."""
    assert data.endswith(b"<EOF>"), f"the connection was left open: {data!r}"
    assert data.count(b"HTTP/1.1 ") == 1, f"more than one answer: {data!r}"
    assert data.startswith(b"HTTP/1.1 %d " % status), data
    head, _, body = data[:-len(b"<EOF>")].partition(b"\r\n\r\n")
    assert re.search(rb"(?im)^connection: close\r?$", head), head
    assert b'"errorCode"' in body, body
    time.sleep(0.2)
    assert "/smuggled-request" not in sw.log()


@pytest.mark.parametrize("first, second", [(0, len(HIDDEN)), (len(HIDDEN), 0)])
def test_content_lengths_that_differ_are_refused(sw, first, second):
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
           % (first, second)) + HIDDEN
    assert_refused_and_closed(sw, exchange(sw.server.port, raw))


def test_content_length_with_transfer_encoding_is_refused(sw):
    """Chunked says the body ends at once, Content-Length that the next request is body too."""
    chunked = b"0\r\n\r\n"
    for order in ((b"Content-Length: %d" % (len(chunked) + len(HIDDEN)),
                   b"Transfer-Encoding: chunked"),
                  (b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(chunked))):
        raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(order) + b"\r\n\r\n"
               + chunked + HIDDEN)
        assert_refused_and_closed(sw, exchange(sw.server.port, raw))


def test_white_space_before_the_colon_is_refused(sw):
    """'Content-Length : N' is not a Content-Length here; a proxy may think it is."""
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : %d\r\n\r\n" % len(HIDDEN)
           + HIDDEN)
    assert_refused_and_closed(sw, exchange(sw.server.port, raw))


def test_unknown_transfer_coding_is_501(sw):
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + HIDDEN
    assert_refused_and_closed(sw, exchange(sw.server.port, raw), 501)


def test_equal_content_lengths_are_accepted(sw):
    """RFC 9112 section 6.3 lets a server accept repeated Content-Length headers of the same
    value; the framing is not ambiguous. The body is exactly that long: the next request on the
    connection is read after it and answered."""
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
           b"abcGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = exchange(sw.server.port, raw)
    assert data.count(b"HTTP/1.1 200 ") == 2, data
    assert data.endswith(b"<EOF>")


@pytest.mark.parametrize("folded", [
    b"Transfer-Encoding:\r\n chunked\r\nContent-Length: %d",  # a proxy unfolding it sees CL+TE
    b"Transfer-Encoding: \r\n\tchunked\r\nContent-Length: %d",
    b"Content-Length: 0\r\n %d",  # unfolded: "0 N", or N
])
def test_folded_framing_headers_are_refused(sw, folded):
    """obs-fold (a header line continued on the next, which starts with white space): the
    server does not see these framing headers as a proxy that unfolds them would."""
    chunked = b"0\r\n\r\n"
    head = folded % (len(chunked) + len(HIDDEN)) if b"%d" in folded else folded
    raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n" + chunked + HIDDEN
    assert_refused_and_closed(sw, exchange(sw.server.port, raw))
