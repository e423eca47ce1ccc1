"""Exact, type-checked serialisation of Python values between sandbox and judge.

A program under test hands its return values to the trusted parent through `encode`, which
reads every value through the built-in types' own C-level accessors (never a method the
program could override: no `__eq__`, `__hash__`, `__repr__`, `__iter__` of the program runs),
and the parent rebuilds them with `decode`, as its own trusted objects, and compares them
itself. An object with a forged `__eq__` therefore crosses as what it is made of.

Covered, and rebuilt as the same type in the judge: None, bool, int (any size), float (nan,
inf, -0.0), complex, str, bytes, bytearray, list, tuple, dict (any hashable keys), set,
frozenset, range, dict views, Counter, OrderedDict, defaultdict (its factory when it is a
built-in type), deque (with maxlen), namedtuples (as a namedtuple with the same fields),
Fraction, Decimal. Iterators and generators are materialised and decoded as an iterator over
the items (so `list(f(x))` works and `f(x) == [...]` stays False, as for the real iterator).

A subclass of one of these built-in or standard types (a Counter subclass, an IntEnum, a
class deriving from list) crosses as its base value, read through the base type's own
accessors: Python compares such values as their base does unless the class overrides
`__eq__`, and an override is program code the judge never runs. Instances of other classes
written in Python (the program's own `Node`, dataclasses, records) cross structurally: class
name, fields (instance `__dict__` and `__slots__`) recursively, and the names of the class's
own attributes; each object is sent once and later references point back to it, so shared
and cyclic structures keep their shape (`executor.values.ProgramObject` in the judge). Enum
members cross as class and member name. Objects with no safe structure (modules, functions,
classes, files, sockets, locks...) cross as an opaque token of kind and name
(`executor.values.Opaque`); a module of the standard library is the judge's own module of
that name.

A value that cannot cross (nested deeper than 200 levels, more than a million items) raises
Unserialisable; the judge reports it as unjudgeable, never as the program's error. (The judge
rebuilds and compares values recursively, within Python's default recursion limit.)

`decode(obj)` builds the judge's values; `decode(obj, real)` (in the sandbox) gives back, for
each object that crossed by identity, the real object from `real` (the list `encode_with`
filled), so test code in the sandbox keeps working on the program's own objects.

This module is imported by the sandbox harness before the program runs, so it keeps private
references to the built-ins it needs; a program that rebinds `builtins.type`, `isinstance` or
`collections.Counter` does not change what it does.
"""

from __future__ import annotations

import collections as _collections
import decimal as _decimal
import enum as _enum
import fractions as _fractions
import json as _json
import math as _math
import types as _types

_type = type
_len = len
_list = list
_int = int
_str = str
_float = float
_tuple = tuple
_dict = dict
_iter = iter
_dumps = _json.dumps
_loads = _json.loads
_MAX_DEPTH = 200
_MAX_ITEMS = 1_000_000
_Counter = _collections.Counter
_OrderedDict = _collections.OrderedDict
_defaultdict = _collections.defaultdict
_deque = _collections.deque
_Fraction = _fractions.Fraction
_Decimal = _decimal.Decimal
_Enum = _enum.Enum
_Module = _types.ModuleType

# C-level readers: each one is the built-in type's own, whatever a subclass overrides.
_mro_of = _type.__dict__["__mro__"].__get__
_flags_of = _type.__dict__["__flags__"].__get__
_qualname_of = _type.__dict__["__qualname__"].__get__
_class_dict = _type.__dict__["__dict__"].__get__
_HEAPTYPE = 1 << 9
_list_copy = _list.copy
_dict_copy = _dict.copy
_dict_items = _dict.items
_dict_getitem = _dict.__getitem__
_tuple_getitem = _tuple.__getitem__
_od_iter = _OrderedDict.__iter__
_deque_iter = _deque.__iter__
_deque_maxlen = _deque.__dict__["maxlen"].__get__
_dd_factory = _defaultdict.__dict__["default_factory"].__get__
_fraction_num = _Fraction.__dict__["_numerator"].__get__
_fraction_den = _Fraction.__dict__["_denominator"].__get__
_decimal_str = _Decimal.__str__
_module_dict = _Module.__dict__["__dict__"].__get__
_member_descriptor = _types.MemberDescriptorType
_getset_descriptor = _types.GetSetDescriptorType
_FULL = slice(None)
# A subclass instance read as its built-in base: int.__pos__(v) is an exact int, and so on.
_AS_BASE = {_int: _int.__pos__, _float: _float.__pos__, complex: complex.__pos__,
            _str: _str.__str__, bytes: bytes.__bytes__, bytearray: bytearray.copy,
            _list: _list_copy, _dict: _dict_copy, set: set.copy, frozenset: frozenset.copy,
            _tuple: lambda v: _tuple_getitem(v, _FULL)}
_FACTORIES = {t.__name__: t for t in (_list, _dict, set, _int, _float, _str, _tuple, bytes,
                                      frozenset, complex, bool)}

_ITERATOR_TYPES = frozenset((
    _types.GeneratorType, _type(_iter([])), _type(_iter(())), _type(_iter("")), map, filter,
    zip, enumerate, reversed, _type(_iter(range(0))), _type(_iter({}.keys())),
    _type(_iter({}.values())), _type(_iter({}.items())), _type(_iter(set())),
))
_VIEWS = {_type({}.keys()): "$dk", _type({}.values()): "$dv", _type({}.items()): "$di"}


# type -> encoder(_Encoder, value, depth) of the judge's stand-ins; filled by executor.values.
STANDINS: dict = {}


class Unserialisable(TypeError):
    """The value cannot cross to the judge (too large, too deep)."""


def _canonical(encoded) -> str:
    return _dumps(encoded, sort_keys=True)


class _Encoder:
    """One `encode` call: the item budget, and the objects that crossed by identity."""

    __slots__ = ("budget", "memo", "real", "drain")

    def __init__(self, real: list | None, drain: bool = True):
        self.budget = _MAX_ITEMS
        self.memo: dict[int, int] = {}  # id(object) -> its index in `real`
        self.real = real if real is not None else []
        self.drain = drain  # materialise iterators (else: opaque, left as they are)

    def enc(self, v, depth: int):
        if depth > _MAX_DEPTH:
            raise Unserialisable(f"the value is nested more than {_MAX_DEPTH} levels deep")
        self.budget -= 1
        if self.budget < 0:
            raise Unserialisable(f"the value has more than {_MAX_ITEMS:,} items")
        t = _type(v)
        if v is None or t is bool or t is _str:
            return v
        if t is _int:
            if -(1 << 63) <= v < (1 << 63):
                return v
            return {"$I": hex(v)}
        if t is _float:
            if v != v or v in (_math.inf, -_math.inf):
                return {"$F": repr(v)}
            return v
        d = depth + 1
        enc = self.enc
        if t is _list:
            return [enc(x, d) for x in v]
        if t is _tuple:
            return {"$t": [enc(x, d) for x in v]}
        if t is _dict:
            return {"$d": [[enc(k, d), enc(x, d)] for k, x in v.items()]}
        if t is set or t is frozenset:
            return self.set_like(t, v, d)
        if t in _ITERATOR_TYPES:
            if not self.drain:  # an argument: the program must get it unconsumed
                return self.by_identity(t, v, _mro_of(t), d)
            items = []
            for x in v:
                items.append(enc(x, d))
            return {"$it": items}
        return self.other(t, v, d)

    def set_like(self, t, v, d: int):
        # Canonical order: iteration order of str/bytes elements depends on the process's
        # hash seed, and the sandbox and the judge must encode equal sets identically.
        items = [self.enc(x, d) for x in v]
        items.sort(key=_canonical)
        return {"$s" if t is set else "$fs": items}

    def items(self, pairs, d: int) -> list:
        enc = self.enc
        return [[enc(k, d), enc(x, d)] for k, x in pairs]

    def other(self, t, v, d: int):
        if t is complex:
            return {"$c": [self.enc(v.real, d), self.enc(v.imag, d)]}
        if t is bytes or t is bytearray:
            return {"$b" if t is bytes else "$ba": v.hex()}
        if t is range:
            return {"$r": [self.enc(v.start, d), self.enc(v.stop, d), self.enc(v.step, d)]}
        view = _VIEWS.get(t)
        if view is not None:
            if view == "$di":
                return {view: self.items(v, d)}
            return {view: [self.enc(x, d) for x in v]}
        hook = STANDINS.get(t)
        if hook is not None:  # the judge's own stand-ins (executor.values), re-encoded
            return hook(self, v, d)
        mro = _mro_of(t)
        if _Enum in mro:
            return self.enum_member(t, v, mro, d)
        for base in mro:
            if base is _Counter:
                return {"$C": self.items(_dict_items(_dict_copy(v)), d)}
            if base is _OrderedDict:
                return {"$od": self.items(((k, _dict_getitem(v, k)) for k in _od_iter(v)), d)}
            if base is _defaultdict:
                factory = _dd_factory(v)
                name = next((n for n, f in _FACTORIES.items() if f is factory), None)
                return {"$dd": [name, self.items(_dict_items(_dict_copy(v)), d)]}
            if base is _deque:
                return {"$dq": [_deque_maxlen(v), [self.enc(x, d) for x in _deque_iter(v)]]}
            if base is _Fraction:
                return {"$fr": [self.enc(_fraction_num(v), d), self.enc(_fraction_den(v), d)]}
            if base is _Decimal:
                return {"$dec": _decimal_str(v)}
            if base is _tuple:
                fields = _class_dict(t).get("_fields") if t is not _tuple else None
                if _type(fields) is _tuple and _len(fields) == _tuple.__len__(v) <= 1024 \
                        and all(_type(f) is _str for f in fields):
                    return self.namedtuple(t, v, fields, d)
                return {"$t": [self.enc(x, d) for x in _tuple_getitem(v, _FULL)]}
            as_base = _AS_BASE.get(base)
            if as_base is not None:
                return self.enc(as_base(v), d - 1)
        return self.by_identity(t, v, mro, d)

    def remember(self, v) -> int | None:
        """The number of an object that crosses by identity: None the first time (it is
        numbered now), its number when it crossed before (then it crosses as a `$ref`)."""
        key = id(v)
        ref = self.memo.get(key)
        if ref is not None:
            return ref
        self.memo[key] = _len(self.real)
        self.real.append(v)
        return None

    def namedtuple(self, t, v, fields, d: int):
        ref = self.remember(v)  # the sandbox's test code keeps the program's own record
        if ref is not None:
            return {"$ref": ref}
        return {"$nt": [self.memo[id(v)], _qualname_of(t), _list(fields),
                        [self.enc(x, d) for x in _tuple_getitem(v, _FULL)]]}

    def enum_member(self, t, v, mro, d: int):
        for base in mro:  # IntEnum, StrEnum...: compared as their value, as Python does
            as_base = _AS_BASE.get(base)
            if as_base is not None:
                return self.enc(as_base(v), d - 1)
        ref = self.remember(v)
        if ref is not None:
            return {"$ref": ref}
        fields = _instance_dict(v, mro) or {}
        return {"$en": [self.memo[id(v)], _qualname_of(t), _str(fields.get("_name_", "")),
                        self.enc(fields.get("_value_"), d)]}

    def by_identity(self, t, v, mro, d: int):
        """A program object (structure) or an opaque token; each object crosses once."""
        seen = self.remember(v)
        if seen is not None:
            return {"$ref": seen}
        ref = self.memo[id(v)]
        if t is _Module:
            return {"$mod": [ref, _str(_module_dict(v).get("__name__", ""))]}
        if _is_plain_class(mro):
            fields = []
            inst = _instance_dict(v, mro)
            if inst:
                for name, x in _dict_items(_dict_copy(inst)):
                    if _type(name) is _str:
                        fields.append([name, self.enc(x, d)])
            for name, x in _slot_values(v, mro):
                fields.append([name, self.enc(x, d)])
            return {"$obj": [ref, _qualname_of(t), fields, _class_attributes(t, mro)]}
        return {"$op": [ref, _qualname_of(t), _name_of(v, t)]}


def _is_plain_class(mro) -> bool:
    """Every class above `object` is written in Python (no C base holding hidden state)."""
    for cls in mro[:-1]:
        if not _flags_of(cls) & _HEAPTYPE:
            return False
    return _len(mro) > 1


def _instance_dict(v, mro) -> dict | None:
    for cls in mro:
        desc = _class_dict(cls).get("__dict__")
        if _type(desc) is _getset_descriptor:
            return desc.__get__(v, cls)
    return None


def _slot_values(v, mro):
    for cls in mro:
        for name, desc in _class_dict(cls).items():
            if _type(desc) is _member_descriptor and _type(name) is _str:
                try:
                    yield name, desc.__get__(v, cls)
                except AttributeError:  # a slot never set
                    continue


def _class_attributes(t, mro) -> list:
    """Names the class and its bases define (methods, properties): the judge does not run them,
    so reading one of them from a program object is unjudgeable, not an AttributeError."""
    names = set()
    for cls in mro[:-1]:
        for name, attr in _class_dict(cls).items():
            if _type(attr) is _member_descriptor or _type(attr) is _getset_descriptor:
                continue  # a slot (a field) or the instance dictionary
            if _type(name) is _str and (not name.startswith("__") or name in _BEHAVIOUR):
                names.add(name)
    return sorted(names)


# Special methods that give a program object behaviour a test might use (the judge has no code
# for them): reported with the class, so that using one is unjudgeable, not a TypeError.
_BEHAVIOUR = frozenset((
    "__bool__", "__len__", "__iter__", "__getitem__", "__setitem__", "__delitem__",
    "__contains__", "__call__", "__lt__", "__le__", "__gt__", "__ge__", "__add__", "__radd__",
    "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__floordiv__", "__mod__",
    "__pow__", "__neg__", "__pos__", "__abs__", "__int__", "__float__", "__index__",
    "__round__", "__reversed__", "__getattr__", "__getattribute__"))


def _name_of(v, t) -> str:
    """The qualified name of a function, class or method, read without running its code."""
    getter = _NAME_GETTERS.get(t)
    if getter is not None:
        try:
            name = getter(v)
            return name if _type(name) is _str else ""
        except Exception:
            return ""
    if _flags_of(t) & (1 << 31):  # a class (a metaclass instance)
        return _qualname_of(v)
    return ""


_NAME_GETTERS = {
    _types.FunctionType: _types.FunctionType.__dict__["__qualname__"].__get__,
    _types.BuiltinFunctionType: _types.BuiltinFunctionType.__dict__["__qualname__"].__get__,
    _types.MethodType: lambda m: _NAME_GETTERS[_types.FunctionType](m.__func__)
    if _type(m.__func__) is _types.FunctionType else "",
    _type: _qualname_of,
}


def encode(value, real: list | None = None, drain: bool = True) -> object:
    """A JSON-ready form of `value`; raises Unserialisable when it cannot cross. Objects that
    cross by identity are appended to `real`, in the order of their `$ref` numbers. Without
    `drain`, iterators are not consumed (they cross as opaque values): for arguments."""
    t = _type(value)
    if t is _str or t is bool or value is None or (t is _int and -(1 << 63) <= value < 1 << 63):
        return value  # the commonest results, without an encoder
    try:
        return _Encoder(real, drain).enc(value, 0)
    except RecursionError:
        raise Unserialisable("the value is nested too deeply") from None


def dumps(value) -> str:
    return _dumps(encode(value), separators=(",", ":"), allow_nan=False)


def encode_program_name(enc: _Encoder, v, name: str):
    """A program name the test code holds (a recorder in the sandbox, a stub in the judge),
    passed to or returned by the program: it crosses as its name."""
    seen = enc.remember(v)
    if seen is not None:
        return {"$ref": seen}
    return {"$prog": [enc.memo[id(v)], name]}


# The other half, rebuilding values, lives in executor.rebuild (imported last: it reads the
# private references above).
def decode(obj, real: list | None = None):
    """Rebuild the value that `encode` described; raises ValueError on a malformed form.
    Without `real`, objects that crossed by identity become the judge's stand-ins
    (`executor.values`); with it, the program's own objects it lists."""
    return _rebuild.decode(obj, real)


def loads(text: str):
    return _rebuild.loads(text)


from executor import rebuild as _rebuild  # noqa: E402
