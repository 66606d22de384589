"""The job admin survives rows the library never writes: the list and the detail page show
the stored value and its problem instead of failing."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from django_rexecutor.models import JobRecord
from tests.bad_rows import BAD_VALUES, POSTGRES_BAD_VALUES, corrupt
from tests.test_admin_helpers import make_job

pytestmark = pytest.mark.django_db

CASES = [pytest.param(*case, id=name) for name, case in BAD_VALUES.items()] + [
    pytest.param(*case, id=name, marks=pytest.mark.postgres_only)
    for name, case in POSTGRES_BAD_VALUES.items()
]


@pytest.mark.parametrize(("column", "value", "field", "words"), CASES)
def test_list_and_detail_show_an_unreadable_value(
    admin_client: Client, column: str, value: str, field: str, words: str
) -> None:
    good = make_job(executor="emails.send")
    bad = make_job(executor="emails.send")
    corrupt(bad.pk, column, value)
    listing = admin_client.get(reverse("admin:django_rexecutor_jobrecord_changelist"))
    assert listing.status_code == 200
    assert f"/{good.pk}/change/" in listing.text and f"/{bad.pk}/change/" in listing.text
    detail = admin_client.get(reverse("admin:django_rexecutor_jobrecord_change", args=[bad.pk]))
    assert detail.status_code == 200
    assert 'class="rx-unreadable"' in detail.text
    assert escape(words) in detail.text or words in detail.text
    assert JobRecord.objects.filter(pk=good.pk).exists()
