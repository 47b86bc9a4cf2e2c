"""Store names are checked on every get and put (23 a mailbox message, issue 14): the
common case (ASCII text) takes a short path that accepts exactly what the full rules
accept, and refuses with the same error whatever the full rules refuse."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.store import MAX_NAME_LENGTH, StoreError, check_name


def _reference(name: object, what: str) -> str:
    """The rules as written before the short path."""
    if not isinstance(name, str):
        raise StoreError(f"{what} must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"{what} must have 1 to {MAX_NAME_LENGTH} characters")
    if "\x00" in name:
        raise StoreError(f"{what} must not contain NUL")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{what} must be encodable as UTF-8") from None
    return name


def _outcome(check: object, name: object) -> tuple[str, str]:
    try:
        return ("ok", check(name, "key"))  # type: ignore[operator]
    except StoreError as exc:
        return ("refused", str(exc))


class _Text(str):
    pass


EDGES: list[object] = [
    "", "a", "\x00", "a\x00b", "x" * MAX_NAME_LENGTH, "x" * (MAX_NAME_LENGTH + 1),
    "caf\u00e9", "\ud800", "a/\udfff", _Text("sub"), 7, None, b"bytes",
    "\u00e9" * MAX_NAME_LENGTH, "\u00e9" * (MAX_NAME_LENGTH + 1),
]  # fmt: skip


def test_edges_are_judged_as_the_full_rules_judge_them() -> None:
    for name in EDGES:
        assert _outcome(check_name, name) == _outcome(_reference, name), repr(name)[:40]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="\x00a/\ud800\u00e9", max_size=8))
def test_any_text_is_judged_as_the_full_rules_judge_it(name: str) -> None:
    assert _outcome(check_name, name) == _outcome(_reference, name)
