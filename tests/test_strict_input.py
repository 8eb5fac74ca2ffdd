"""Input the schema does not allow is refused with the API's plain 400, never coerced or passed to PostgreSQL: NUL
characters (a 500 DataError before: PostgreSQL stores none), JSON values of the wrong type, and malformed paging or
filter parameters. Found by the schema fuzzing (tests/test_schemathesis.py)."""

from __future__ import annotations

import pytest

from tests.factories import DatasetFactory, FineTunedModelFactory

pytestmark = pytest.mark.django_db


def _refused(response, needle: str = "") -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 400, response.content
    body = response.json()
    assert needle in body["detail"] + str(body["errors"]), body
    return body


@pytest.mark.parametrize(
    "path", ["/api/models/?search=a%00b", "/api/datasets/?page=1&x%00=1", "/api/training/jobs/?status=%00"]
)
def test_a_nul_character_in_the_query_string_is_refused(auth_client, path):
    _refused(auth_client.get(path), "NUL")


def test_a_nul_character_anywhere_in_a_json_field_is_refused(auth_client, user):
    dataset = DatasetFactory(owner=user, rows=False)
    _refused(
        auth_client.patch(
            f"/api/datasets/{dataset.pk}/", {"column_mapping": {"instruction": "q\u0000"}}, format="json"
        ),
        "NUL",
    )
    _refused(
        auth_client.post(
            "/api/training/estimate/",
            {"dataset": dataset.pk, "base_model": 1, "hyperparameters": {"lr\u0000": 1}},
            format="json",
        ),
        "NUL",
    )
    _refused(auth_client.patch("/api/auth/me/", {"display_name": "a\u0000b"}, format="json"))


def test_json_values_of_the_wrong_type_are_refused_not_coerced(auth_client, user):
    model = FineTunedModelFactory(owner=user)
    body = _refused(auth_client.patch(f"/api/models/{model.pk}/", {"notes": 12, "tag": True}, format="json"))
    assert set(body["errors"]) == {"notes", "tag"}
    _refused(auth_client.patch("/api/auth/me/", {"notify_email": 1}, format="json"), "boolean")
    _refused(auth_client.post("/api/auth/tokens/", {"name": 5}, format="json"), "string")
    model.refresh_from_db()
    assert model.notes == "" and model.tag == ""


@pytest.mark.parametrize(
    "query",
    [
        "page_size=abc",
        "page_size=0",
        "page_size=201",
        "page_size=",
        "latest=maybe",
        "base_model=-1",
        "base_model=99999999999999999999",
    ],
)
def test_malformed_paging_and_filter_parameters_are_refused(auth_client, query):
    _refused(auth_client.get(f"/api/models/?{query}"))


def test_valid_paging_and_filters_still_work(auth_client, user):
    FineTunedModelFactory(owner=user)
    response = auth_client.get("/api/models/?page_size=200&latest=1&base_model=0")
    assert response.status_code == 200 and response.json()["count"] == 0
    assert auth_client.get("/api/models/?page_size=1&latest=false").json()["count"] == 1


def test_an_empty_integer_parameter_is_refused_not_taken_as_absent(auth_client, user):
    from tests.factories import TrainingJobFactory

    job = TrainingJobFactory(owner=user)
    for query in ("after_seq=", "limit=", "after_seq=x"):
        _refused(auth_client.get(f"/api/training/jobs/{job.pk}/metrics/?{query}"), "integer")
    assert auth_client.get(f"/api/training/jobs/{job.pk}/logs/?after_seq=0").status_code == 200


def test_the_api_token_limit_is_a_quota_answer(auth_client, user):
    from accounts.services import create_api_token

    for i in range(50):
        create_api_token(user, name=f"t{i}")
    response = auth_client.post("/api/auth/tokens/", {"name": "one more"}, format="json")
    assert response.status_code == 429 and "50 API tokens" in response.json()["detail"]


def test_an_api_path_with_a_newline_is_the_api_404(auth_client):
    response = auth_client.post("/api/models/push-hub/a%0Ab/retry/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found.", "errors": {}}
