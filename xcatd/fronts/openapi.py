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
             404: "Not found", 409: "Already exists",
             502: "Every node failed: its management controller could not be reached or "
                  "refused (one 'node: message' each)"}
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
                                  **_errors(400, 401, 403, 404)}},
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
                                     **_errors(400, 401, 403, 404)}}},
    }


PER_NODE = ("Per node, as xCAT's REST API gives it: node -> {%s: ...}. Nodes that failed "
            "are not keys; each is one 'node: message' line in errors. A partial result is "
            "200 with errors, so a caller must look at errors even on 200; when no node "
            "succeeded the answer is an error status with errors only. The answer streams: "
            "each node is written as soon as it has answered (errors and warnings come last). "
            "With 'Accept: application/x-ndjson' the answer is instead one JSON record per "
            "line as the command protocol sends them, {\"r\": {node, data|error|warning}}, "
            "and a last {\"end\": {\"exitcode\": N}}.")
NODE = _param("name", "a noderange (n1,n2 or a group)")


def _per_node(key: str, value: dict, what: str) -> dict:
    """The schema of a per-node answer: {node: {key: value}}, plus errors and warnings."""
    return {"type": "object", "description": PER_NODE % key + " " + what,
            "properties": {"errors": {"type": "array", "items": STR},
                           "warnings": {"type": "array", "items": STR}},
            "additionalProperties": {"type": "object", "required": [key],
                                     "properties": {key: value},
                                     "additionalProperties": False}}


def _action_body(example: dict[str, Any], properties: dict[str, Any]) -> dict:
    return {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "properties": properties, "additionalProperties": False},
        "example": example}}}


LINES = {"type": "array", "items": STR}


def _node_action_paths() -> dict[str, Any]:
    """/xcatws/nodes/{name}/power, nextboot, bootstate, inventory, vitals, eventlog: the
    commands rpower, rsetboot, nodeset, rinv, rvitals and reventlog."""
    tags = ["nodes"]
    hw_errors = _errors(400, 401, 403, 404, 502)
    return {
        "/xcatws/nodes/{name}/power": {
            "parameters": [NODE],
            "get": {"summary": "Power state (rpower stat)", "tags": tags, "responses": {
                "200": _json(_per_node("power", STR, "on or off."), "power states"),
                **hw_errors}},
            "put": {"summary": "Change the power (rpower <action>)", "tags": tags,
                    "requestBody": _action_body({"action": "on"}, {"action": {
                        **STR, "enum": ["on", "off", "softoff", "reset", "boot", "cycle",
                                        "nmi", "stat", "state", "status"]}}),
                    "responses": {"200": _json(_per_node(
                        "power", STR, "What rpower prints: the state after the action, or "
                                      "xCAT's word for it (boot: 'on reset' or 'off on')."),
                        "done"), **hw_errors}}},
        "/xcatws/nodes/{name}/nextboot": {
            "parameters": [NODE],
            "get": {"summary": "Next boot device (rsetboot stat)", "tags": tags,
                    "responses": {"200": _json(_per_node(
                        "nextboot", STR, "Network, Hard Drive, CD/DVD, ... or 'boot override "
                                         "inactive'."), "next boot devices"), **hw_errors}},
            "put": {"summary": "Set the next boot device (rsetboot <order> [-p] [-u])",
                    "tags": tags,
                    "requestBody": _action_body({"order": "net"}, {
                        "order": {**STR, "enum": ["net", "hd", "cd", "def", "default", "floppy",
                                                  "setup"]},
                        "persistent": {"type": "boolean", "description": "rsetboot -p"},
                        "uefi": {"type": "boolean", "description": "rsetboot -u"}}),
                    "responses": {"200": _json(_per_node("nextboot", STR, "The device set."),
                                               "set"), **hw_errors}}},
        "/xcatws/nodes/{name}/bootstate": {
            "parameters": [NODE],
            "get": {"summary": "Network boot state (nodeset stat)", "tags": tags,
                    "responses": {"200": _json(_per_node(
                        "bootstat", STR, "xCAT's words: 'install <os>-<arch>-<profile>', "
                                         "boot, shell, offline, ..."), "boot states"),
                                  **_errors(400, 401, 403, 404)}},
            "put": {"summary": "Set the network boot state (nodeset osimage=<image> | "
                               "<state>)", "tags": tags,
                    "requestBody": _action_body({"osimage": "rocky9.4-x86_64-install-compute"}, {
                        "osimage": {**STR, "description": "nodeset osimage=<osimage>"},
                        "state": {**STR, "description": "boot, shell, standby, offline, "
                                                        "shutdown, next, runcmd=..., "
                                                        "runimage=..., or a comma chain"}}),
                    "responses": {"200": _json(_per_node("bootstat", STR, "The state set."),
                                               "set"), **_errors(400, 401, 403, 404)}}},
        "/xcatws/nodes/{name}/inventory": {
            "parameters": [NODE],
            "get": {"summary": "Hardware inventory (rinv <type>)", "tags": tags,
                    "parameters": [_param("type", "one of all (default), model, serial, vpd, "
                                                  "firm, mprom, deviceid, guid, uuid, mac, "
                                                  "dimm, asset, misc", "query")],
                    "responses": {"200": _json(_per_node(
                        "inventory", LINES, "rinv's 'Label: value' lines, in its order."),
                        "inventory"), **hw_errors}}},
        "/xcatws/nodes/{name}/vitals": {
            "parameters": [NODE],
            "get": {"summary": "Sensor readings (rvitals <type>)", "tags": tags,
                    "parameters": [{**_param("type", "temp, voltage, wattage, fanspeed, "
                                                     "power, leds or all (default); "
                                                     "comma-separated or repeated", "query"),
                                    "explode": True}],
                    "responses": {"200": _json(_per_node(
                        "vitals", LINES, "rvitals' 'Sensor: reading' lines."), "readings"),
                        **hw_errors}}},
        "/xcatws/nodes/{name}/eventlog": {
            "parameters": [NODE],
            "get": {"summary": "Hardware event log (reventlog <count>|all [-s])", "tags": tags,
                    "parameters": [_param("count", "the newest N entries, or all (default)",
                                          "query"),
                                   _param("sort", "1 for newest first (reventlog -s)",
                                          "query")],
                    "responses": {"200": _json(_per_node(
                        "eventlog", LINES, "reventlog's lines, oldest first."), "events"),
                        **hw_errors}},
            "delete": {"summary": "Clear the event log (reventlog clear)", "tags": tags,
                       "responses": {"200": _json(_per_node(
                           "eventlog", LINES, "['SEL cleared']."), "cleared"),
                           **hw_errors}}},
    }


SHELL_LINE = {
    "description": "One line of the application/x-ndjson answer (one JSON object per line, "
                   "sent as the nodes go): a line of a node's standard output or error, "
                   "a node's exit code, an error (with node when it is one node's: "
                   "unreachable, host key refused, timed out; without, xCAT's 'n1 remote "
                   "Command had return code: N' and errors of the request), a warning, a "
                   "message (trace lines), and last {done: true, rc, job}: rc is the exit "
                   "code xdsh/xdcp would give (1 if any node failed), job the job's id.",
    "oneOf": [
        *({"type": "object", "required": ["node", key], "additionalProperties": False,
           "properties": {"node": STR, key: schema}}
          for key, schema in (("stdout", STR), ("stderr", STR), ("rc", {"type": "integer"}))),
        *({"type": "object", "required": [key], "additionalProperties": False,
           "properties": {"node": STR, key: STR}} for key in ("error", "warning", "message")),
        {"type": "object", "required": ["done", "rc"], "additionalProperties": False,
         "properties": {"done": {"type": "boolean", "enum": [True]},
                        "rc": {"type": "integer"}, "job": STR}}]}
SHELL_ANSWER = {"description": "The run, as it goes: application/x-ndjson (see the schema of "
                               "a line). 200 once a node has answered, whatever the nodes "
                               "did: read the error lines and the done line's rc. A client "
                               "that closes the connection stops the run (commands still "
                               "running are killed on the nodes). The X-Xcat-Job header "
                               "names the job.",
                "content": {"application/x-ndjson": {"schema": SHELL_LINE}}}
POSITIVE = {"type": "number", "minimum": 0, "exclusiveMinimum": True}
REMOTE = {"fanout": {"type": "integer", "minimum": 1,
                     "description": "nodes at work at once (default DSH_FANOUT, else 64)"},
          "timeout": {**POSITIVE, "description": "seconds one node may take, connection "
                                                 "included (default: none)"},
          "user": {**STR, "description": "log in as (default root)"},
          "options": {"type": "array", "items": STR,
                      "description": "ssh options as xdsh -o takes them: "
                                     "StrictHostKeyChecking=no|accept-new|yes, "
                                     "ConnectTimeout=S, Port=N"}}
FLAG = {"type": "boolean"}


def _shell_body(example: dict, properties: dict, extra: dict) -> dict:
    return {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "properties": {**properties, **REMOTE},
                   "additionalProperties": False, **extra},
        "example": example}}}


def _shell_paths() -> dict[str, Any]:
    """/xcatws/nodes/{name}/shell and files: xdsh and xdcp, answered as NDJSON."""
    errors = {**_errors(400, 401, 403, 404)}
    return {
        "/xcatws/nodes/{name}/shell": {
            "parameters": [NODE],
            "post": {
                "summary": "Run a command on the nodes over ssh (xdsh)", "tags": ["nodes"],
                "description": "Unknown body fields and values of the wrong type are 400, "
                               "naming the field.",
                "requestBody": _shell_body({"command": "uptime", "fanout": 32}, {
                    "command": {**STR, "description": "the command line, run by the "
                                                      "login shell (the script's arguments "
                                                      "with script)"},
                    "script": {**STR, "description": "a script's text: copied to each node "
                                                     "and run there (xdsh -e)"},
                    "script_name": {**STR, "description": "the script's name, for traces"},
                    "env": {"type": "object", "additionalProperties": STR,
                            "description": "variables exported before the command"},
                    "stream": {**FLAG, "description": "each line as it comes (xdsh -s); "
                                                      "default: a node's lines together "
                                                      "when it is done"},
                    "exitcode": {**FLAG, "description": "each node's {node, rc} line (xdsh "
                                                        "-z); default true"},
                    "sudo": {**FLAG, "description": "run the command with sudo -n"}},
                    {"anyOf": [{"required": ["command"]}, {"required": ["script"]}]}),
                "responses": {"200": SHELL_ANSWER, **errors}}},
        "/xcatws/nodes/{name}/files": {
            "parameters": [NODE],
            "post": {
                "summary": "Copy files to the nodes, or pull them back (xdcp)",
                "tags": ["nodes"],
                "description": "Paths on the management node are full paths, read and "
                               "written by xcatd as root: root only. Each node gets {node, "
                               "rc: 0} when its copy is done.",
                "requestBody": _shell_body({"src": ["/etc/hosts"], "target": "/etc/"}, {
                    "src": {"oneOf": [STR, {"type": "array", "items": STR}],
                            "description": "files (directories with recursive) on the "
                                           "management node; with pull, on the nodes"},
                    "target": {**STR, "description": "the path on the nodes; with pull, a "
                                                     "directory of the management node "
                                                     "that gets <name>._<node>"},
                    "recursive": {**FLAG, "description": "copy directories (xdcp -R)"},
                    "preserve": {**FLAG, "description": "keep the files' modes (xdcp -p)"},
                    "pull": {**FLAG, "description": "copy from the nodes (xdcp -P)"}},
                    {"required": ["src", "target"]}),
                "responses": {"200": SHELL_ANSWER, **errors}}},
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
                      **_errors(400, 401, 403, 404)}}}
    paths.update(_node_action_paths())
    paths.update(_shell_paths())
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
                                           "the job"), **_errors(400, 401, 403, 404)}},
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
