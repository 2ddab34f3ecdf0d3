"""The OpenAPI 3.0 description of the REST API, served at /xcatws/openapi.json.

Written out resource by resource (not generated from the routes), so the test that compares
the two catches a route added without documentation, or documentation without a route.
"""
from __future__ import annotations

from typing import Any

from xcatd import __version__

STR = {"type": "string"}
NULLABLE_STR = {"type": "string", "nullable": True}
ERRORS = {"type": "object", "required": ["errors"],
          "properties": {"errors": {"type": "array", "items": STR}}}
MESSAGES = {"type": "object", "required": ["messages"],
            "properties": {"messages": {"type": "array", "items": STR},
                           "warnings": {"type": "array", "items": STR}}}
NAMES = {"type": "object", "required": ["objects"],
         "properties": {"objects": {"type": "array", "items": STR}}}
ATTRS = {"type": "object", "additionalProperties": STR}
OBJECTS = {"type": "object", "additionalProperties": ATTRS,
           "description": "object name -> attribute -> value"}
JOB = {"type": "object", "required": ["jobid", "state", "command", "user"],
       "properties": {k: NULLABLE_STR for k in (
           "jobid", "user", "client", "clienttype", "command", "noderange", "args", "state",
           "created", "started", "finished", "exitcode", "comments", "disable")}}
RESULT = {"type": "object", "properties": {
    "node": STR, "data": STR, "error": STR, "warning": STR, "errorcode": {"type": "integer"}}}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "Bad request", 401: "No valid client certificate", 403: "Permission denied",
             404: "Not found", 409: "Already exists"}
    return {str(c): _json(ERRORS, words[c]) for c in codes}


def _param(name: str, description: str, where: str = "path") -> dict:
    return {"name": name, "in": where, "required": where == "path", "schema": STR,
            "description": description}


SECRETS = _param("show_secrets", "1 to show passwords in clear (audited)", "query")
BODY = {"required": True, "content": {"application/json": {"schema": ATTRS}}}


def _object_paths(resource: str, objtype: str, what: str) -> dict[str, Any]:
    name = _param("name", f"{what} name" + (" (a noderange)" if objtype == "node" else ""))
    return {
        f"/xcatws/{resource}": {"get": {
            "summary": f"List {what} names (lsdef -t {objtype})", "tags": [resource],
            "responses": {"200": _json(NAMES, f"{what} names"), **_errors(401, 403)}}},
        f"/xcatws/{resource}/{{name}}": {
            "parameters": [name],
            "get": {"summary": f"Show {what} definitions (lsdef -t {objtype} -l)",
                    "tags": [resource], "parameters": [SECRETS],
                    "responses": {"200": _json(OBJECTS, "definitions"),
                                  **_errors(401, 403, 404)}},
            "post": {"summary": f"Create (mkdef -t {objtype})", "tags": [resource],
                     "requestBody": BODY,
                     "responses": {"201": _json(MESSAGES, "created"),
                                   **_errors(400, 401, 403, 409)}},
            "put": {"summary": f"Change (chdef -t {objtype})", "tags": [resource],
                    "requestBody": BODY,
                    "responses": {"200": _json(MESSAGES, "changed"),
                                  **_errors(400, 401, 403, 404)}},
            "delete": {"summary": f"Remove (rmdef -t {objtype})", "tags": [resource],
                       "responses": {"200": _json(MESSAGES, "removed"),
                                     **_errors(401, 403, 404)}}},
    }


def spec() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for resource, objtype, what in (("nodes", "node", "node"), ("groups", "group", "group"),
                                    ("osimages", "osimage", "osimage"),
                                    ("networks", "network", "network"),
                                    ("policy", "policy", "policy rule")):
        paths.update(_object_paths(resource, objtype, what))
    paths["/xcatws/nodes/{name}/attrs/{attrs}"] = {"get": {
        "summary": "Show some attributes of nodes (lsdef -i)", "tags": ["nodes"],
        "parameters": [_param("name", "a noderange"),
                       _param("attrs", "comma-separated attribute names"), SECRETS],
        "responses": {"200": _json(OBJECTS, "node -> attribute -> value"),
                      **_errors(401, 403, 404)}}}
    paths["/xcatws/site"] = {
        "get": {"summary": "Show the site settings (lsdef -t site)", "tags": ["site"],
                "parameters": [SECRETS],
                "responses": {"200": _json(ATTRS, "site key -> value"), **_errors(401, 403)}},
        "put": {"summary": "Change site settings (chdef -t site)", "tags": ["site"],
                "requestBody": BODY,
                "responses": {"200": _json(MESSAGES, "changed"), **_errors(400, 401, 403)}}}
    paths["/xcatws/tables"] = {"get": {
        "summary": "List the tables (tabdump)", "tags": ["tables"],
        "responses": {"200": _json({"type": "object", "required": ["tables"], "properties": {
            "tables": {"type": "array", "items": STR}}}, "table names"), **_errors(401, 403)}}}
    paths["/xcatws/tables/{table}/rows"] = {"get": {
        "summary": "Rows of a table (tabdump [-w])", "tags": ["tables"],
        "parameters": [_param("table", "table name"),
                       {**_param("where", "selection col==val, col!=val, col=~pattern, ...; "
                                          "repeat for AND", "query"),
                        "explode": True}, SECRETS],
        "responses": {"200": _json({"type": "object", "required": ["rows"], "properties": {
            "rows": {"type": "array", "items": {"type": "object", "additionalProperties":
                                                {"type": "string", "nullable": True}}}}},
            "rows as column -> value"), **_errors(400, 401, 403, 404)}}}
    paths["/xcatws/tables/{table}/rows/{keys}"] = {
        "parameters": [_param("table", "table name"),
                       _param("keys", "key=value[,key=value] selecting the rows")],
        "put": {"summary": "Add or change rows (chtab)", "tags": ["tables"],
                "requestBody": BODY,
                "responses": {"200": _json(MESSAGES, "changed"), **_errors(400, 401, 403, 404)}},
        "delete": {"summary": "Delete rows (chtab -d)", "tags": ["tables"],
                   "responses": {"200": _json(MESSAGES, "deleted"),
                                 **_errors(400, 401, 403, 404)}}}
    paths["/xcatws/jobs"] = {"get": {
        "summary": "Recent jobs (job list)", "tags": ["jobs"],
        "parameters": [_param("all", "1 for every job, not only the last 20", "query")],
        "responses": {"200": _json({"type": "object", "required": ["jobs"], "properties": {
            "jobs": {"type": "array", "items": JOB}}}, "jobs"), **_errors(401, 403)}}}
    paths["/xcatws/jobs/{jobid}"] = {
        "parameters": [_param("jobid", "job id or a unique prefix")],
        "get": {"summary": "A job and its per-node results (job show)", "tags": ["jobs"],
                "responses": {"200": _json({"type": "object", "required": ["job", "results"],
                                            "properties": {"job": JOB, "results": {
                                                "type": "array", "items": RESULT}}},
                                           "the job"), **_errors(401, 403, 404)}},
        "delete": {"summary": "Cancel a running job (job cancel)", "tags": ["jobs"],
                   "responses": {"200": _json(MESSAGES, "cancel requested"),
                                 **_errors(400, 401, 403, 404)}}}
    paths["/xcatws/openapi.json"] = {"get": {
        "summary": "This description", "tags": ["meta"],
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0 document")}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "pyxcat xcatd REST API", "version": __version__,
                 "description": "Every call runs as a job of the caller (client certificate "
                                "CN) through the same policy, audit and locks as the "
                                "commands."},
        "paths": paths,
    }
