"""``Status.of``: the one rule by which a host function answers a service that raised."""

from __future__ import annotations

import pytest

from omnicore.egress.refused import Refused as EgressRefused
from omnicore.sandbox.capability import Status
from omnicore.storage import NotAnInteger, QuotaExceeded, StorageError, ValueTooLarge
from omnicore.storage.memory_rows import BadMemory
from omnicore.storage.vector_rows import BadVector, UnknownCollection


@pytest.mark.parametrize(("exc", "status"), [
    (QuotaExceeded("over max_keys"), Status.QUOTA),
    (ValueTooLarge("over max_value_bytes"), Status.TOO_LARGE),
    (NotAnInteger("not decimal"), Status.INVALID),
    (BadVector("NaN"), Status.INVALID),
    (BadMemory("no text"), Status.INVALID),
    (UnknownCollection("no such collection"), Status.NOT_FOUND),
    (StorageError("disk I/O error"), Status.UNAVAILABLE),
    (EgressRefused("DENIED", "not in the grant"), Status.DENIED),
    (EgressRefused("SOMETHING_NEW", "a status this host does not know"), Status.UNAVAILABLE),
    (TypeError("not a refusal"), Status.UNAVAILABLE),
])
def test_a_refusal_answers_with_the_status_it_names_anything_else_unavailable(
        exc: BaseException, status: int) -> None:
    assert Status.of(exc) == status


def test_every_status_has_its_name() -> None:
    assert {Status.NAMED[name] for name in Status.NAMED} == set(Status.WIT_CASES)
    assert all(getattr(Status, name) == code for name, code in Status.NAMED.items())
