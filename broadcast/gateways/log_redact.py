"""httpx logs every request's URL at INFO ("HTTP Request: GET http://…?username=bc&password=…"),
and Kannel's sendsms takes its password in the query string: whoever turns on INFO logging would
write the gateway's password to the log. A filter on the ``httpx`` logger masks the values of
secret-looking query parameters in those records before any handler sees them."""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "signature", "sig", "auth")
_PARAM = re.compile(r"(?i)([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&#\s\"']*")


def mask(text: str) -> str:
    """``text`` with the value of every secret-looking query parameter replaced by ``****``."""
    return _PARAM.sub(r"\1****", text)


class MaskQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(mask(str(a)) if ("=" in str(a)) else a for a in record.args)
        elif isinstance(record.msg, str) and "=" in record.msg:
            record.msg = mask(record.msg)
        return True


def install() -> None:
    """Once per process: the filter on the loggers that print request URLs."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskQuerySecrets) for f in logger.filters):
            logger.addFilter(MaskQuerySecrets())
