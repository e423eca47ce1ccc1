"""The fork-server's wire format: how messages and records travel between its processes.

* Worker <-> supervisor, and supervisor -> child request: length-prefixed values (`write_msg`,
  `read_msg`), packed with marshal, which is quick and runs no code when read, where every
  value allows it; pickle otherwise. Only trusted processes read these (the worker, the
  supervisor, and a child before it runs the program). The messages themselves are typed
  records (`executor.messages`), sent as the plain dicts marshal carries.
* Child -> supervisor: the record channel, length-prefixed JSON frames (`RecordFrames`) that
  the program's process writes, so the supervisor parses them as untrusted input: a JSON
  scanner (no code runs), a size cap, and garbage ends the stream.

Imported by the zygote before it forks: it uses only modules every program is forked with
(marshal, struct, json); pickle is imported where it is needed.
"""

from __future__ import annotations

import json
import marshal
import os
import struct

_HDR = struct.Struct(">I")
_SCAN = json.JSONDecoder().scan_once  # (text, index) -> (value, end)


def read_exact(fd: int, n: int) -> bytes:
    """Exactly `n` bytes from `fd`; EOFError if it ends first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def pack(obj) -> bytes:
    """Values between trusted processes (worker, supervisor, child request): marshal, which is
    quick and runs no code when read, where every value allows it (code objects included);
    pickle otherwise, with code objects inside it carried as marshal."""
    try:
        return b"M" + marshal.dumps(obj)
    except ValueError:
        import io
        import pickle
        import types

        class _Pickler(pickle.Pickler):
            def reducer_override(self, value):
                if type(value) is types.CodeType:
                    return marshal.loads, (marshal.dumps(value),)
                return NotImplemented

        buf = io.BytesIO()
        _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
        return b"P" + buf.getvalue()


def unpack(data):
    data = memoryview(data)
    if data[:1] == b"M":
        return marshal.loads(data[1:])
    import pickle

    return pickle.loads(data[1:])


def read_msg(fd: int):
    (n,) = _HDR.unpack(read_exact(fd, _HDR.size))
    return unpack(read_exact(fd, n))


def encode_msg(obj) -> bytes:
    data = pack(obj)
    return _HDR.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_msg(fd: int, obj) -> None:
    write_all(fd, encode_msg(obj))


class RecordFrames:
    """Splits the record channel's bytes into JSON frames; garbage ends the stream."""

    def __init__(self, limit: int):
        self.buf = bytearray()
        self.records: list = []
        self.bad = False
        self.size = 0
        self.limit = limit

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.bad or self.size > self.limit:
            self.bad = True
            return
        buf = self.buf
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            (n,) = _HDR.unpack_from(buf, pos)
            if n > self.limit:
                self.bad = True
                break
            if end - pos - 4 < n:
                break
            try:  # the C scanner itself: json.loads adds layers of Python per record
                text = buf[pos + 4:pos + 4 + n].decode("utf-8")
                rec, stop = _SCAN(text, 0)
            except (ValueError, StopIteration, RecursionError):  # garbage, or nested too deep
                self.bad = True
                break
            if stop != len(text):
                self.bad = True
                break
            pos += 4 + n
            if type(rec) is dict:
                self.records.append(rec)
        del buf[:pos]

