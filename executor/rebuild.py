"""Rebuilding values from the form `executor.serialize.encode` gives them (its other half).

In the judge, `decode` builds trusted objects: the standard types themselves, and for what
crossed by structure or identity the stand-ins of `executor.values` (imported only there). In
the sandbox, given the list of objects the encoding met (`real`), it gives back the program's
own objects instead. A malformed form (only a forged record can have one) raises ValueError.
"""

from __future__ import annotations

from executor.serialize import (_Counter, _Decimal, _FACTORIES, _Fraction, _OrderedDict,
                                _defaultdict, _deque, _dict, _float, _int, _iter, _len, _list,
                                _loads, _str, _tuple, _type)


class _Decoder:
    __slots__ = ("real", "made")

    def __init__(self, real: list | None):
        self.real = real
        self.made: dict[int, object] = {}  # $ref number -> the judge's object

    def dec(self, obj):
        # Lists, tuples and dicts without a comprehension or a call per level: one frame of
        # recursion per level of nesting.
        t = _type(obj)
        if obj is None or t is bool or t is _int or t is _float or t is _str:
            return obj
        dec = self.dec
        if t is _list:
            out = []
            for x in obj:
                out.append(dec(x))
            return out
        if t is not _dict or _len(obj) != 1:
            raise ValueError(f"malformed encoded value: {obj!r:.80}")
        (tag, body), = obj.items()
        if tag == "$t":
            out = []
            for x in body:
                out.append(dec(x))
            return _tuple(out)
        if tag == "$d":
            made = {}
            for k, x in body:
                made[dec(k)] = dec(x)
            return made
        fn = _TAGS.get(tag)
        if fn is None:
            raise ValueError(f"unknown tag {tag!r}")
        return fn(self, body)

    def pairs(self, body):
        return [(self.dec(k), self.dec(x)) for k, x in body]


def _dec_ref(dc: _Decoder, ref):
    if dc.real is not None:
        return dc.real[ref]
    if ref not in dc.made:
        raise ValueError(f"reference to an object not yet seen: {ref!r}")
    return dc.made[ref]


def _dec_obj(dc: _Decoder, body):
    ref, cls, fields, attrs = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import ProgramObject

    obj = ProgramObject(_str(cls), [_str(a) for a in attrs])
    dc.made[ref] = obj  # before its fields: they may point back to it
    for name, x in fields:
        obj._rltf_fields[_str(name)] = dc.dec(x)
    return obj


def _dec_opaque(dc: _Decoder, body):
    ref, kind, name = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import Opaque

    obj = dc.made[ref] = Opaque(_str(kind), _str(name))
    return obj


def _dec_program_name(dc: _Decoder, body):
    ref, name = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import Opaque

    obj = dc.made[ref] = Opaque("program name", _str(name))
    return obj


def _dec_module(dc: _Decoder, body):
    ref, name = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import module_named

    obj = dc.made[ref] = module_named(_str(name))
    return obj


def _dec_enum(dc: _Decoder, body):
    ref, cls, name, value = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import EnumMember

    obj = dc.made[ref] = EnumMember(_str(cls), _str(name), dc.dec(value))
    return obj


def _dec_namedtuple(dc: _Decoder, body):
    ref, name, fields, items = body
    if dc.real is not None:
        return dc.real[ref]
    from executor.values import namedtuple_class

    obj = dc.made[ref] = namedtuple_class(_str(name), _tuple(_str(f) for f in fields))(
        *[dc.dec(x) for x in items])
    return obj


def _dec_defaultdict(dc: _Decoder, body):
    name, items = body
    out = _defaultdict(_FACTORIES.get(name) if name is not None else None)
    out.update(dc.pairs(items))
    return out


def _dec_float(dc: _Decoder, body):
    if body not in ("nan", "inf", "-inf"):
        raise ValueError(f"malformed float {body!r}")
    return _float(body)


def _dec_decimal(dc: _Decoder, body):
    if _type(body) is not _str:
        raise ValueError("malformed Decimal")
    return _Decimal(body)


def _dec_deque(dc: _Decoder, body):
    maxlen, items = body
    if maxlen is not None and (_type(maxlen) is not _int or maxlen < 0):
        raise ValueError("malformed deque")
    return _deque([dc.dec(x) for x in items], maxlen)


_TAGS = {
    "$I": lambda dc, b: _int(b, 16),
    "$F": _dec_float,
    "$t": lambda dc, b: _tuple(dc.dec(x) for x in b),
    "$d": lambda dc, b: _dict(dc.pairs(b)),
    "$s": lambda dc, b: {dc.dec(x) for x in b},
    "$fs": lambda dc, b: frozenset(dc.dec(x) for x in b),
    "$c": lambda dc, b: complex(dc.dec(b[0]), dc.dec(b[1])),
    "$b": lambda dc, b: bytes.fromhex(b),
    "$ba": lambda dc, b: bytearray.fromhex(b),
    "$r": lambda dc, b: range(*[dc.dec(x) for x in b]),
    "$dk": lambda dc, b: _dict.fromkeys(dc.dec(x) for x in b).keys(),
    "$dv": lambda dc, b: {i: dc.dec(x) for i, x in enumerate(b)}.values(),
    "$di": lambda dc, b: _dict(dc.pairs(b)).items(),
    "$it": lambda dc, b: _iter([dc.dec(x) for x in b]),
    "$C": lambda dc, b: _Counter(_dict(dc.pairs(b))),
    "$od": lambda dc, b: _OrderedDict(dc.pairs(b)),
    "$dd": _dec_defaultdict,
    "$dq": _dec_deque,
    "$fr": lambda dc, b: _Fraction(dc.dec(b[0]), dc.dec(b[1])),
    "$dec": _dec_decimal,
    "$nt": _dec_namedtuple,
    "$en": _dec_enum,
    "$obj": _dec_obj,
    "$op": _dec_opaque,
    "$mod": _dec_module,
    "$prog": _dec_program_name,
    "$ref": _dec_ref,
}


def decode(obj, real: list | None = None):
    """See `executor.serialize.decode`."""
    t = _type(obj)
    if obj is None or t is _str or t is _int or t is bool or t is _float:
        return obj
    try:
        return _Decoder(real).dec(obj)
    except RecursionError:  # deeper than anything encode makes: a forged record
        raise ValueError("malformed encoded value: nested too deeply") from None
    except Exception as err:  # a forged record: a Fraction over 0, a Decimal of "x", ...
        raise ValueError(f"malformed encoded value: {type(err).__name__}: {err}"[:300]) \
            from None


def loads(text: str):
    try:
        obj = _loads(text)
    except RecursionError:
        raise ValueError("malformed encoded value: nested too deeply") from None
    return decode(obj)
