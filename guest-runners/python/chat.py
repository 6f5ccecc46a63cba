"""The chat of catpaw-py: one instance per chat session, so the
conversation's state lives on the object between turns."""

from componentize_py_types import Err

from wit_world.exports import chat
from wit_world.imports import host

from app import PLUGINS, call


class Conversation(chat.Conversation):
    def __init__(self, allow_shell: bool) -> None:
        self.allow_shell = allow_shell
        self.turns = 0

    @classmethod
    def create(cls, allow_shell: bool) -> "Conversation":
        return cls(allow_shell)

    def handle_message(self, input: str) -> str:
        self.turns += 1
        text = input.strip()
        if text.startswith("run "):
            return self.shell(text[4:])
        for name, _, tools in PLUGINS:
            if name in text.lower():
                host.emit(f"looking at {name}", host.Stage.THINKING, None)
                parts = [call(tool, args) for tool, args in tools]
                return f"turn {self.turns}, {name}:\n" + "\n".join(parts)
        names = ", ".join(p[0] for p in PLUGINS)
        return f"turn {self.turns}: ask about {names}, or `run <command>`"

    def shell(self, command: str) -> str:
        host.emit(f"asking to run: {command}", host.Stage.TOOL_CALL, None)
        try:
            out = host.request_shell(command, 10_000)
        except Err as e:
            # A denied, timed-out or failed request is an answer, not an
            # error of the turn: the chat goes on.
            reason = e.value
            detail = getattr(reason, "value", None)
            kind = type(reason).__name__.split("_")[-1].lower()
            return f"shell {kind}: {detail}" if detail else f"shell {kind}"
        host.emit(f"exit {out.exit_code}", host.Stage.TOOL_RESULT, None)
        return f"exit {out.exit_code}\n{out.stdout}{out.stderr}"
