#!/usr/bin/env python3
"""Validate tokengate's OpenAPI document, then real answers against it.

Usage: validate_openapi.py BASE_URL SAMPLES_FILE

Fetches BASE_URL/openapi.json and validates it as OpenAPI 3.1 with
openapi-spec-validator. SAMPLES_FILE holds a JSON list of real answers,
{path, method, status, content_type, headers, body}, each of which must be
documented: its status under its operation, its content type, every header of
note it carries, and its JSON body must validate against the response's
schema (OpenAPI 3.1 dialect) with every object closed — a field the schema
does not list fails too. Prints one JSON line: what was checked, and the
documented paths no sample was for. Any failure exits non-zero.
"""
import copy
import json
import sys

import requests
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# Headers every answer carries, or that say nothing of the endpoint.
UNREMARKABLE = {"content-type", "content-length", "cache-control", "date", "x-request-id"}


def closed(schema):
    """A copy where objects admit only the properties they list."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(value) for value in schema]
    return schema


def main() -> int:
    base, samples_file = sys.argv[1].rstrip("/"), sys.argv[2]
    reply = requests.get(f"{base}/openapi.json", timeout=10)
    reply.raise_for_status()
    spec = reply.json()
    validate(spec)  # raises on an invalid document

    strict = closed(copy.deepcopy(spec))
    registry = Registry().with_resource(
        "urn:tokengate", Resource.from_contents(strict, default_specification=DRAFT202012)
    )
    failures = []
    with open(samples_file, encoding="utf-8") as f:
        samples = json.load(f)
    for sample in samples:
        status = str(sample["status"])
        where = f"{sample['method'].upper()} {sample['path']} {status}"
        item = spec["paths"].get(sample["path"], {})
        method = sample["method"]
        if method not in item and status == "405":
            # Another method than the path's: any of its operations says so.
            method = next(iter(item), method)
        if method not in item:
            failures.append(f"{where}: no such operation")
            continue
        at = ["paths", sample["path"], method, "responses", status]
        response = item[method]["responses"].get(status)
        if response is None:
            failures.append(f"{where}: status not documented")
            continue
        if "$ref" in response:  # a shared one
            name = response["$ref"].rsplit("/", 1)[-1]
            at = ["components", "responses", name]
            response = spec["components"]["responses"][name]
        documented_headers = {name.lower() for name in response.get("headers", {})}
        for header in sample["headers"]:
            if header not in UNREMARKABLE and header not in documented_headers:
                failures.append(f"{where}: header {header} not documented")
        media_type = (sample["content_type"] or "").split(";")[0].strip()
        if media_type not in response.get("content", {}):
            failures.append(f"{where}: content type {media_type!r} not documented")
            continue
        if media_type != "application/json" or sample["method"] == "head":
            continue
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in at + ["content", media_type, "schema"]
        )
        validator = OAS31Validator({"$ref": f"urn:tokengate#/{pointer}"}, registry=registry)
        try:
            validator.validate(json.loads(sample["body"]))
        except ValidationError as e:
            failures.append(f"{where}: {e.message} at {list(e.absolute_path)}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    unsampled = sorted(set(spec["paths"]) - {sample["path"] for sample in samples})
    print(json.dumps({"openapi": spec["openapi"], "checked": len(samples), "unsampled": unsampled}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
