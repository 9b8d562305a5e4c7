"""Open N keep-alive connections, make one request on each, then hold them idle.

Used by run.sh to measure a server's memory per idle connection. Prints
``READY open=<n> still_open=<k> failed=<f>`` once every connection has had its
response (or the deadline passed), then keeps the sockets open until
``--hold`` seconds pass or the process is terminated. Loopback only; every
wait is bounded.
"""

import argparse
import selectors
import signal
import socket
import sys
import time

BATCH = 500


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--path", default="/items/1")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="seconds allowed to open and use the connections")
    parser.add_argument("--hold", type=float, default=60.0,
                        help="seconds to keep the connections open after READY")
    return parser.parse_args()


def response_complete(buffer):
    """True once ``buffer`` holds a full response with a Content-Length body."""
    head, sep, body = buffer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return True  # no Content-Length: the headers are all we wait for


def exchange(batch, request, deadline):
    """Send ``request`` on every socket of ``batch``; return those that answered."""
    selector = selectors.DefaultSelector()
    buffers = {}
    for sock in batch:
        try:
            sock.sendall(request)
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        buffers[sock] = b""
    answered = []
    while buffers and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                buffers[sock] += chunk
                if not response_complete(buffers[sock]):
                    continue
                answered.append(sock)
            else:
                sock.close()
            selector.unregister(sock)
            del buffers[sock]
    for sock in buffers:
        selector.unregister(sock)
        sock.close()
    selector.close()
    return answered


def still_open(socks):
    """Count sockets the server has not closed (no EOF pending)."""
    open_count = 0
    for sock in socks:
        try:
            open_count += sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            open_count += 1
        except OSError:
            pass
    return open_count


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    deadline = time.monotonic() + args.deadline
    opened = []
    failed = 0
    while len(opened) + failed < args.count and time.monotonic() < deadline:
        batch = []
        for _ in range(min(BATCH, args.count - len(opened) - failed)):
            try:
                batch.append(socket.create_connection(("127.0.0.1", args.port), timeout=5))
            except OSError:
                failed += 1
        answered = exchange(batch, request, deadline)
        failed += len(batch) - len(answered)
        opened += answered
    time.sleep(1.0)  # let the server settle before its memory is read
    print(f"READY open={len(opened)} still_open={still_open(opened)} failed={failed}",
          flush=True)
    time.sleep(args.hold)
    for sock in opened:
        sock.close()


if __name__ == "__main__":
    main()
