"""Fixtures of the two-way tests: the engine tests' ``setup`` (20 members of 一支部, the clock frozen)."""

from tests.helpers.scripted import setup  # noqa: F401
