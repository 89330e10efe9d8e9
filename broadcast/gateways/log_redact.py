"""httpx logs every request's URL at INFO ("HTTP Request: GET http://…?username=bc&password=…"),
and Kannel's sendsms takes its password in the query string: whoever turns on INFO logging would
write the gateway's password to the log. A filter on the ``httpx`` logger masks the values of
secret-looking query parameters in those records before any handler sees them, and the hook id in
a Feishu bot's path (``/open-apis/bot/v2/hook/<id>``: the id is the whole credential). The robots'
keys (WeCom ``key=``, DingTalk ``access_token=``, ``sign=``) and WeCom's ``corpsecret=`` are query
parameters like the others."""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = ("password", "passwd", "pass", "pwd", "secret", "token", "key", "signature", "sig", "auth",
                 "access_token", "corpsecret", "sign")
_PARAM = re.compile(r"(?i)([?&](?:" + "|".join(SECRET_PARAMS) + r")=)[^&#\s\"']*")
_HOOK = re.compile(r"(/hook/)[^/?#\s\"']+")


def mask(text: str) -> str:
    """``text`` with the value of every secret-looking query parameter, and a bot's hook id in a
    URL's path, replaced by ``****``."""
    return _HOOK.sub(r"\1****", _PARAM.sub(r"\1****", text))


def _maskable(text: str) -> bool:
    return "=" in text or "/hook/" in text


class MaskQuerySecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(mask(str(a)) if _maskable(str(a)) else a for a in record.args)
        elif isinstance(record.msg, str) and _maskable(record.msg):
            record.msg = mask(record.msg)
        return True


def install() -> None:
    """Once per process: the filter on the loggers that print request URLs."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskQuerySecrets) for f in logger.filters):
            logger.addFilter(MaskQuerySecrets())
