"""Structured JSON logs, one object per line, with secrets scrubbed before anything is written.

Log shippers parse JSON without regexes, and fields (``extra={"fields": {...}}``) stay queryable.
Secrets are ``SecretStr`` in the settings so they are masked when the settings are logged; as a
second line of defence the formatter replaces every registered secret value, and the password of
any ``scheme://user:password@host`` URL, wherever it appears in a message, field or traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

REDACTED = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)(?P<tail>@)")


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, default=str, ensure_ascii=False))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            escaped = json.dumps(secret)[1:-1]  # how the secret looks inside a JSON string
            if escaped != secret:
                text = text.replace(escaped, REDACTED)
        return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}{m['tail']}", text)


def configure_logging(level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default), replacing other handlers."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # kafka-python logs every connection state change at INFO.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
