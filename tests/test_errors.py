"""The error map: every exception ltxflow raises is defined in errors.py and drawn in its docstring,
with the exit code the CLI returns for it; the few internal signals elsewhere are named there too."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import ltxflow
from ltxflow import errors

# Exceptions that never reach a user, defined beside the code that raises and catches them
# (errors.py's docstring names each one).
INTERNAL = {"ModelInvalid", "CannotDecode", "TooLong", "PathRefused", "Cancelled", "_Retry"}


def exception_classes() -> dict[str, type]:
    """Every exception class defined in an ltxflow module, by module-qualified name."""
    out = {}
    for info in pkgutil.walk_packages(ltxflow.__path__, "ltxflow."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                out[f"{info.name}.{name}"] = obj
    return out


def test_every_exception_is_defined_in_errors_or_is_a_named_internal_signal():
    classes = exception_classes()
    outside = {q.rsplit(".", 1)[1] for q in classes if not q.startswith("ltxflow.errors.")}
    assert outside == INTERNAL
    for name in INTERNAL:
        assert name in errors.__doc__, name


def test_every_user_error_is_in_the_map_with_its_exit_code():
    users = {cls for cls in exception_classes().values() if issubclass(cls, errors.LtxflowError)}
    assert len(users) >= 15
    lines = errors.__doc__.splitlines()
    for cls in users:
        line = next((l for l in lines if f" {cls.__name__} (" in l or f".{cls.__name__} " in l or
                     f"─ {cls.__name__} " in l), None)
        assert line is not None, f"{cls.__name__} is not drawn in errors.py's docstring"
        if f"{cls.__name__} (" in line:
            assert f"{cls.__name__} ({cls.exit_code})" in line, (cls.__name__, cls.exit_code, line)
    assert issubclass(errors.BackendError, errors.LtxflowError)  # a backend's failure is a user's error too
    assert {errors.EXIT_OK, errors.EXIT_FAILED, errors.EXIT_INVALID, errors.EXIT_NO_FFMPEG,
            errors.EXIT_INTERRUPTED, errors.EXIT_TERMINATED} == {0, 1, 2, 3, 130, 143}
