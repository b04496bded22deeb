"""Serving errors: a gRPC status code with a message (REST maps it to an HTTP status)."""
from __future__ import annotations

import re

import grpc


class ServingError(Exception):
    """An error with a gRPC status code; REST maps it to an HTTP status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_argument(msg: str) -> ServingError:
    """ServingError INVALID_ARGUMENT."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


# TF error codes have the same numbers as gRPC status codes.
GRPC_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def first_line(message: str) -> str:
    """The informative line of an error (TF graph errors: the op's message and node), <= 2000 chars."""
    node = re.search(r"Detected at node (\S+)", message)
    lines = []
    for line in re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message).splitlines():
        if not line.strip() or line[:1].isspace() or line.startswith(
                ("Graph execution error", "Detected at node", "<stack traces", "File ")):
            continue
        lines.append(line.strip())
    text = lines[0] if lines else message.strip() or "unknown error"
    if node and node[1] not in text:
        text += f" (at node {node[1]})"
    return text[:2000]
