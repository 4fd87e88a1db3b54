#!/usr/bin/env python3
"""Writes the part of Vapi's OpenAPI document the tests use: every `ServerMessage*` schema
and the schemas they reference up to DEPTH levels down, the same JSON values; a reference
deeper than that (assistant and model configurations, which the typed parse keeps raw) becomes
`{"type": "object"}`, and prose (descriptions, examples) is left out. The published crate then carries its test data without the 3 MB
document.

    python3 scripts/shrink-openapi.py   # from the repository root
"""
import json
import re

SRC = "tests/fixtures/reference/vapi-openapi.json"
DST = "tests/fixtures/reference/vapi-openapi-server-messages.json"

doc = json.load(open(SRC))
schemas = doc["components"]["schemas"]
DEPTH = 1
REF = re.compile(r'"#/components/schemas/([^"]+)"')
level = [name for name in schemas if name.startswith("ServerMessage")]
keep = {}
for depth in range(DEPTH + 1):
    following = []
    for name in level:
        if name in keep or name not in schemas:
            continue
        keep[name] = schemas[name]
        following += REF.findall(json.dumps(schemas[name]))
    level = following


# Prose, which says nothing about what an instance may hold.
PROSE = {"description", "example", "examples", "title"}


def prune(value):
    """References to schemas not kept become a plain object; prose goes."""
    if isinstance(value, dict):
        ref = value.get("$ref", "")
        if ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] not in keep:
            return {"type": "object"}
        return {k: prune(v) for k, v in value.items() if k not in PROSE}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


keep = {name: prune(schema) for name, schema in keep.items()}
out = {
    "openapi": doc.get("openapi"),
    "info": doc.get("info"),
    "x-shrunk-from": "vapi-openapi.json: the ServerMessage* schemas and what they reference",
    "components": {"schemas": dict(sorted(keep.items()))},
}
with open(DST, "w") as f:
    json.dump(out, f, separators=(",", ":"), sort_keys=False)
    f.write("\n")
print(f"{len(keep)} schemas -> {DST}")
