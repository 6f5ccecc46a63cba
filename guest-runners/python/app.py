"""catpaw-py: an example catpaw runner in Python (inspect, diagnose, chat).

Built with componentize-py against ../../wit/runner.wit (world `runner`):

    componentize-py -d ../../wit -w runner componentize app -o catpaw_py.wasm

It reaches the host only through `wit_world.imports.host`: it streams what
it does (`emit`), reads the host through its read-only tools (`call_tool`),
and in a chat runs `run <command>` through `request_shell`, which the host
refuses unless the session was granted a shell. The chat's conversation is
in chat.py (componentize-py looks for an exported resource in a module
named after its interface).
"""

import json

from componentize_py_types import Err

from wit_world import exports
from wit_world.exports import describe, diagnose
from wit_world.imports import host

# The inspect plugins: name, the line the server shows, and the tools
# (with their JSON args) each calls. describe, run and the chat read it.
PLUGINS = [
    ("cpu", "CPU usage and load, and the busiest processes",
     [("cpu", "{}"), ("top_processes", '{"by":"cpu","limit":5}')]),
    ("mem", "Memory and swap use, and the largest processes",
     [("memory", "{}"), ("top_processes", '{"by":"memory","limit":5}')]),
    ("disk", "Space and inode use of every filesystem",
     [("disk_usage", "{}")]),
    ("uptime", "How long the host has been up", [("uptime", "{}")]),
]


def call(tool: str, args: str) -> str:
    """Calls one tool, streaming the call and a short view of its result.
    A tool's error (an Err from the host) becomes a line of the report."""
    meta = json.dumps({"tool": tool})
    host.emit(f"calling {tool} {args}", host.Stage.TOOL_CALL, meta)
    try:
        out = host.call_tool(tool, args)
    except Err as e:
        host.emit(f"{tool} failed: {e.value}", host.Stage.TOOL_RESULT, meta)
        return f"could not read {tool}: {e.value}"
    host.emit(summary(out), host.Stage.TOOL_RESULT, meta)
    return out


def summary(raw: str) -> str:
    """The top-level keys of a tool's JSON result, for the stream."""
    try:
        value = json.loads(raw)
    except ValueError:
        return f"{len(raw)} bytes (not JSON)"
    if isinstance(value, dict):
        return "fields: " + ", ".join(sorted(value.keys())[:8])
    return f"{len(raw)} bytes"


def plugin(name: str):
    for p in PLUGINS:
        if p[0] == name:
            return p
    return None


class Describe(exports.Describe):
    def describe(self) -> describe.RunnerInfo:
        return describe.RunnerInfo(
            name="catpaw-py",
            version="0.1.0",
            plugins=[describe.PluginInfo(name=n, description=d) for n, d, _ in PLUGINS],
            capabilities=["tools", "shell"],
        )


class Diagnose(exports.Diagnose):
    def run(self, req: diagnose.Request) -> str:
        chosen = plugin(req.plugin)
        if chosen is None and req.mode == "alert":
            chosen = ("all", "", [t for p in PLUGINS for t in p[2]])
        if chosen is None:
            known = ", ".join(p[0] for p in PLUGINS)
            raise Err(f'unknown plugin "{req.plugin}" (known: {known})')
        kind = "Diagnosis" if req.mode == "alert" else "Inspection"
        host.emit(f"{kind} of {req.plugin} on {req.target}", host.Stage.THINKING, None)
        report = f"# {kind}: {req.plugin} on {req.target} (catpaw-py)\n"
        if req.mode == "alert":
            params = json.loads(req.params_json or "{}")
            alert = params.get("descriptions")
            if alert:
                report += f"\n> {alert}\n"
        for tool, args in chosen[2]:
            report += f"\n## {tool}\n\n```json\n{call(tool, args)}\n```\n"
        return report


class Chat(exports.Chat):
    pass
