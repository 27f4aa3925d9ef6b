"""/api/schema/ (OpenAPI 3) and /api/docs/, /api/redoc/ served offline."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

CATALOGUE_PATHS = {
    "/api/v1/auth/token",
    "/api/v1/centers",
    "/api/v1/centers/{code}",
    "/api/v1/equipment-types",
    "/api/v1/equipment-types/{code}",
    "/api/v1/pools",
    "/api/v1/pools/{code}",
}
CDN_HINTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "fonts.googleapis.com")


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:500]
    return response.json()


def normalised(path: str) -> str:
    return path.rstrip("/") if path != "/" else path


def test_it_serves_a_valid_openapi_3_document(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]
    validate_schema(schema)  # raises on an invalid document


def test_it_serves_yaml_by_default(client):
    response = client.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


def test_it_documents_the_catalogue(schema):
    paths = {normalised(path) for path in schema["paths"]}

    assert CATALOGUE_PATHS <= paths
    assert (
        "get"
        in schema["paths"][next(p for p in schema["paths"] if normalised(p) == "/api/v1/pools")]
    )


def test_it_documents_the_catalogue_filters(schema):
    operation = next(
        schema["paths"][p]["get"]
        for p in schema["paths"]
        if normalised(p) == "/api/v1/equipment-types"
    )
    names = {parameter["name"] for parameter in operation["parameters"]}

    assert {"center", "field", "phase", "search", "page", "page_size"} <= names


def test_it_documents_bearer_authentication(schema):
    schemes = schema["components"]["securitySchemes"]

    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearerAuth"].items()


def local_references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)


@pytest.mark.parametrize(
    "url",
    [
        "/api/docs/",
        "/api/redoc/",
    ],
)
def test_the_docs_render_from_local_static_files_only(client, url):
    response = client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    for hint in CDN_HINTS:
        assert hint not in html, f"{url} loads from a CDN ({hint})"
    references = local_references(html)
    assert references, f"{url} references no scripts or styles"
    for reference in references:
        if reference == f"{url}?script=":  # Swagger UI's init script, served by the view (CSP)
            script = client.get(reference)
            assert script.status_code == 200
            html += script.content.decode()  # it names the schema URL
            continue
        assert reference.startswith("/static/"), f"{url} references {reference}, which is not local"
        assert finders.find(reference.removeprefix("/static/")), (
            f"{reference} is not in any static folder"
        )
    assert "/api/schema/" in html


def test_the_docs_need_no_sign_in(client):
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
