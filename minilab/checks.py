"""Checks of single settings, shared by the config dataclasses: each raises LabError naming the setting."""

import math
from dataclasses import fields

from minilab.errors import LabError


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
