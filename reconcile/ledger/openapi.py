"""The OpenAPI 3.1 description `GET /openapi.json` serves: the webhook endpoint, its message
kinds and answers, and the health endpoints."""

from __future__ import annotations

from typing import Any

from reconcile.ledger.messages import API_VERSIONS


def description(path: str) -> dict[str, Any]:
    from importlib.metadata import version

    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    error = {"type": "object", "required": ["apiVersion", "kind", "metadata", "error"],
             "properties": {"apiVersion": {"type": "string"}, "kind": {"const": "Error"},
                            "metadata": {"type": "object"},
                            "error": {"type": "object", "properties": {"code": {"type": "integer"},
                                                                        "status": {"type": "string"},
                                                                        "message": {"type": "string"}}}}}
    message = {"type": "object", "required": ["apiVersion", "kind", "metadata", "request"],
               "properties": {"apiVersion": {"enum": sorted({v for vs in API_VERSIONS.values() for v in vs})},
                              "kind": {"enum": list(API_VERSIONS)},
                              "metadata": {"type": "object", "required": ["uid", "tenant"],
                                           "properties": {"uid": {"type": "string", "maxLength": 128},
                                                          "tenant": {"type": "string"}}},
                              "request": {"type": "object"}}}

    def answer(text: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": text, "content": {"application/json": {"schema": schema}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": "reconcile Ketch webhook ledger", "version": version("ketch-braze-reconcile")},
        "components": {"schemas": {"Message": message, "Error": error},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                           "basic": {"type": "http", "scheme": "basic"}}},
        "paths": {
            path: {"post": {
                "summary": "Receive a Ketch Forwarder message (recorded once per metadata.uid)",
                "security": [{"bearer": []}, {"basic": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Message"}}}},
                "responses": {
                    "200": answer("recorded; DeleteRequest answers a DeleteResponse, others an empty body",
                                  {"type": "object"}),
                    "204": {"description": "recorded, nothing to answer"},
                    "400": answer("invalid message or unknown kind (kept for inspection)",
                                  {"$ref": "#/components/schemas/Error"}),
                    "401": answer("missing or wrong credentials", {"$ref": "#/components/schemas/Error"}),
                    "413": answer("body larger than ledger.max_body_bytes", {"$ref": "#/components/schemas/Error"}),
                }}},
            "/healthz": {"get": {"summary": "Liveness: the process serves",
                                 "responses": {"200": answer("alive", status)}}},
            "/readyz": {"get": {"summary": "Readiness: the state store answers",
                                "responses": {"200": answer("ready", status),
                                              "503": answer("store unavailable", status)}}},
        },
    }
