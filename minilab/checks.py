"""Checks of single settings, shared by the config dataclasses: each raises LabError naming the setting."""

import math
from dataclasses import Field, asdict, field, fields

from minilab.errors import LabError


def setting(default, help: str, **meta) -> Field:
    """A config field with its help text (the flag's, in minilab/app/flags.py): the default is written only here.

    ``meta`` may add ``choices`` (a tuple), ``metavar``, and ``shown`` (the default as help shows it,
    where the field's own default is a stand-in such as None).
    """
    return field(default=default, metadata={"help": help, **meta})


def shown_default(f: Field) -> str:
    """A field's default as help texts and the docs write it: on/off, 0.001, 1000000, a word."""
    if "shown" in f.metadata:
        return str(f.metadata["shown"])
    value = f.default
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


class DictConfig:
    """What every config dataclass has: a JSON-ready dict (``to_dict``) and back (``from_dict``, strict)."""

    what = "config"  # names the config in the error for unknown keys

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return from_dict(cls, d, cls.what)


def from_dict(cls, d: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise LabError(f"unknown {what} key(s): {', '.join(unknown)}")
    return cls(**d)


def check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise LabError(f"{name} {value!r}: choose one of {', '.join(choices)}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise LabError(f"{name} must be true or false, got {value!r}")


def check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise LabError(f"{name} must be between {low} and {high}, got {value}")


def check_float(name, value, low, high, low_open=False, high_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise LabError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")
