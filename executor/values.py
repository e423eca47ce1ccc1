"""The judge's stand-ins for program values that cross by structure or identity.

`executor.serialize.decode` builds these in the trusted parent; none of them holds or runs
program code:

* `ProgramObject`: an instance of a class the program wrote (a tree `Node`, a dataclass). It
  compares structurally, class name first, then fields, recursively, with cycles handled (two
  objects already being compared further up count as equal, so cyclic structures compare by
  their shape). Its fields read and write as attributes. What would need the program's own
  code (a method, a property, `str()`/`repr()`, ordering, iteration the class defines) raises
  `Unjudgeable`; an attribute that is neither a field nor defined by the class raises
  AttributeError, as it would under the benchmark's own harness.
* `Opaque`: a value with no safe structure (a function, a class, a file, a lock). Two of them
  are equal when kind and name are; anything else the test does with one is `Unjudgeable`.
* `EnumMember`: a member of an Enum without a built-in mixin, equal to the member of the same
  class and name (members of IntEnum and the like cross as their value).
* modules: a module of the standard library is the judge's own module of that name (so a test
  that reads `sys.getsizeof` through the program's `import sys` works); any other module is an
  `Opaque`.

`Unjudgeable` derives from BaseException so that test code's own `except Exception` cannot
swallow it; the judge reports the test as unjudgeable (see `core.records.Result`).
"""

from __future__ import annotations

import collections
import importlib
import keyword
import sys
import threading

from executor import serialize

# Standard-library modules the judge never imports for a program (side effects on import,
# or nothing a test would read).
_NO_IMPORT = frozenset({"antigravity", "this", "__hello__", "__phello__", "idlelib",
                        "turtledemo", "turtle", "tkinter", "test", "lib2to3", "ensurepip",
                        "venv", "__main__", "pydoc_data"})


class Unjudgeable(BaseException):
    """The test needs something of a program value that the judge cannot safely get: the
    program's own code (a method, `__repr__`...), or a value too large or deep to cross."""


def describe(obj) -> str:
    """A short description of a value for messages, without running any program code."""
    if type(obj) is ProgramObject:
        return f"a {object.__getattribute__(obj, '_rltf_cls')} object"
    if type(obj) is Opaque:
        kind, name = obj._rltf_kind, obj._rltf_name
        return f"{kind} {name}" if name else f"a {kind} object"
    return f"a {type(obj).__name__} value"


def _not_equal(self, other):
    eq = self.__eq__(other)
    return eq if eq is NotImplemented else not eq


class ProgramObject:
    """An instance of a program's class, as its class name, fields and class attribute names."""

    __slots__ = ("_rltf_cls", "_rltf_attrs", "_rltf_fields")

    def __init__(self, cls: str, attrs, fields: dict | None = None):
        object.__setattr__(self, "_rltf_cls", cls)
        object.__setattr__(self, "_rltf_attrs", list(attrs))
        object.__setattr__(self, "_rltf_fields", fields if fields is not None else {})

    def __getattr__(self, name: str):  # called only for names not found on this class
        fields = object.__getattribute__(self, "_rltf_fields")
        if name in fields:
            return fields[name]
        cls = object.__getattribute__(self, "_rltf_cls")
        attrs = object.__getattribute__(self, "_rltf_attrs")
        if name in attrs or "__getattr__" in attrs or "__getattribute__" in attrs:
            raise Unjudgeable(f"the test uses {cls}.{name}, which runs the program's own code")
        raise AttributeError(f"'{cls}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value) -> None:
        object.__getattribute__(self, "_rltf_fields")[name] = value

    def __delattr__(self, name: str) -> None:
        fields = object.__getattribute__(self, "_rltf_fields")
        if name not in fields:
            raise AttributeError(name)
        del fields[name]

    def __eq__(self, other):
        # Class name, then fields, recursively; two objects already being compared further up
        # count as equal (a cycle). One frame per level, besides the comparison's own.
        if type(other) is not ProgramObject:
            other = _as_structure(other)
            if other is None:
                return NotImplemented
        if self is other:
            return True
        get = object.__getattribute__
        if get(self, "_rltf_cls") != get(other, "_rltf_cls"):
            return False
        fa, fb = get(self, "_rltf_fields"), get(other, "_rltf_fields")
        if fa.keys() != fb.keys():
            return False
        pending = getattr(_active, "pairs", None)
        if pending is None:
            pending = _active.pairs = set()
        key = (id(self), id(other))
        if key in pending:
            return True
        pending.add(key)
        try:
            for name, value in fa.items():
                if not value == fb[name]:
                    return False
            return True
        except RecursionError:
            raise Unjudgeable(f"{describe(self)} is nested too deeply to compare") from None
        finally:
            pending.discard(key)

    __ne__ = _not_equal

    def __hash__(self) -> int:
        return hash(("ProgramObject", object.__getattribute__(self, "_rltf_cls")))

    def __bool__(self) -> bool:
        self._needs_program("__bool__", "__len__")
        return True

    def _needs_program(self, *names: str) -> None:
        attrs = object.__getattribute__(self, "_rltf_attrs")
        for name in names:
            if name in attrs:
                cls = object.__getattribute__(self, "_rltf_cls")
                raise Unjudgeable(f"the test uses {cls}.{name}, which runs the program's own "
                                  f"code")

    def __repr__(self) -> str:
        raise Unjudgeable(f"the test turns {describe(self)} into text, which runs the "
                          f"program's own __repr__ or __str__")

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return self.__repr__()


def _unsupported(name: str):
    def method(self, *args):
        self._needs_program(name)
        cls = object.__getattribute__(self, "_rltf_cls")
        raise TypeError(f"'{cls}' object does not support {name}")

    method.__name__ = name
    return method


for _name in ("__iter__", "__len__", "__getitem__", "__setitem__", "__delitem__",
              "__contains__", "__call__", "__lt__", "__le__", "__gt__", "__ge__", "__add__",
              "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__floordiv__", "__mod__", "__pow__", "__neg__", "__pos__", "__abs__",
              "__int__", "__float__", "__index__", "__round__", "__reversed__"):
    setattr(ProgramObject, _name, _unsupported(_name))


def _as_structure(obj) -> ProgramObject | None:
    """A test's own instance of a class written in Python, as a ProgramObject; else None."""
    if type(obj).__module__ == "builtins" or type(obj) in serialize.STANDINS:
        return None
    try:
        value = serialize.decode(serialize.encode(obj))
    except (serialize.Unserialisable, ValueError):
        return None
    return value if type(value) is ProgramObject else None


_active = threading.local()  # pairs of objects being compared, per thread


class Opaque:
    """A value with no safe structure, known by its kind (type name) and name."""

    __slots__ = ("_rltf_kind", "_rltf_name")
    _TRUTHY = frozenset({"function", "builtin_function_or_method", "method", "type", "module"})

    def __init__(self, kind: str, name: str):
        object.__setattr__(self, "_rltf_kind", kind)
        object.__setattr__(self, "_rltf_name", name)

    def _refuse(self, what: str):
        raise Unjudgeable(f"the test {what} {describe(self)}, which has no structure the "
                          f"judge can use")

    def __getattr__(self, name: str):
        self._refuse(f"reads .{name} of")

    def __setattr__(self, name: str, value) -> None:
        self._refuse(f"sets .{name} of")

    def __eq__(self, other):
        if type(other) is Opaque:
            return (self._rltf_kind, self._rltf_name) == (other._rltf_kind, other._rltf_name)
        return NotImplemented

    __ne__ = _not_equal

    def __hash__(self) -> int:
        return hash((self._rltf_kind, self._rltf_name))

    def __bool__(self) -> bool:
        if self._rltf_kind in self._TRUTHY:
            return True
        self._refuse("asks the truth of")

    def __repr__(self) -> str:
        self._refuse("turns into text")

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        self._refuse("turns into text")

    def __call__(self, *args, **kwargs):
        self._refuse("calls")

    def __iter__(self):
        self._refuse("iterates over")

    def __len__(self) -> int:
        self._refuse("takes the length of")


def _refused(name: str):
    def method(self, *args):
        self._refuse(f"uses {name} of")

    method.__name__ = name
    return method


for _name in ("__getitem__", "__setitem__", "__delitem__", "__contains__", "__lt__", "__le__",
              "__gt__", "__ge__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__",
              "__rmul__", "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__",
              "__mod__", "__rmod__", "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__",
              "__int__", "__float__", "__complex__", "__index__", "__round__",
              "__reversed__", "__and__", "__or__", "__xor__"):
    setattr(Opaque, _name, _refused(_name))


class EnumMember:
    """A member of a program's Enum (without a built-in mixin): class and member name."""

    __slots__ = ("cls", "name", "value")

    def __init__(self, cls: str, name: str, value):
        self.cls, self.name, self.value = cls, name, value

    def __eq__(self, other):
        if type(other) is EnumMember:
            return (self.cls, self.name) == (other.cls, other.name)
        return NotImplemented

    __ne__ = _not_equal

    def __hash__(self) -> int:
        return hash((self.cls, self.name))

    def __repr__(self) -> str:
        return f"<{self.cls.rsplit('.', 1)[-1]}.{self.name}: {self.value!r}>"

    def __str__(self) -> str:
        return f"{self.cls.rsplit('.', 1)[-1]}.{self.name}"


def module_named(name: str):
    """The judge's own standard-library module `name`, or an Opaque for any other module."""
    top = name.split(".", 1)[0]
    if top in sys.stdlib_module_names and top not in _NO_IMPORT:
        module = sys.modules.get(name)
        if module is not None:
            return module
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - not importable here: keep it opaque
            pass
    return Opaque("module", name)


_NAMEDTUPLES: dict[tuple, type] = {}


def namedtuple_class(qualname: str, fields: tuple) -> type:
    """A namedtuple class with these fields, made here (never the program's own class)."""
    key = (qualname, fields)
    cls = _NAMEDTUPLES.get(key)
    if cls is None:
        base = qualname.rsplit(".", 1)[-1]
        typename = base if base.isidentifier() and not keyword.iskeyword(base) else "Record"
        cls = collections.namedtuple(typename, fields, rename=True)
        cls.__qualname__ = qualname
        if len(_NAMEDTUPLES) < 4096:
            _NAMEDTUPLES[key] = cls
    return cls


# -- re-encoding the stand-ins (the judge encodes a test's arguments to match recorded calls) --
def _encode_object(enc, v: ProgramObject, d: int):
    seen = enc.remember(v)
    if seen is not None:
        return {"$ref": seen}
    get = object.__getattribute__
    ref = enc.memo[id(v)]
    fields = [[name, enc.enc(x, d)] for name, x in get(v, "_rltf_fields").items()]
    return {"$obj": [ref, get(v, "_rltf_cls"), fields, list(get(v, "_rltf_attrs"))]}


def _encode_opaque(enc, v: Opaque, d: int):
    seen = enc.remember(v)
    if seen is not None:
        return {"$ref": seen}
    return {"$op": [enc.memo[id(v)], v._rltf_kind, v._rltf_name]}


def _encode_enum(enc, v: EnumMember, d: int):
    seen = enc.remember(v)
    if seen is not None:
        return {"$ref": seen}
    return {"$en": [enc.memo[id(v)], v.cls, v.name, enc.enc(v.value, d)]}


serialize.STANDINS.update({ProgramObject: _encode_object, Opaque: _encode_opaque,
                           EnumMember: _encode_enum})
