"""How many SMS parts a message bills for its audience.

Each person's own text (the frozen body with {name} {group} {phone} filled in) is counted with the
signature, as the providers count it (Aliyun, Tencent: signature with its 【】 + content; 70
characters are one part, then 67 a part), whether broadcast prepends the signature or the provider
adds it. The parts are also summed per group a delivery is reached through (the group name it
records, ``AudienceMember.group``), which is what budgets and ``report --by group`` count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from broadcast.messages.audience import AudienceMember
from broadcast.messages.checks import wrap_signature
from broadcast.messages.compose import render_for
from broadcast.messages.segments import count_segments

__all__ = ["Billable", "billable_parts", "parts_of"]


@dataclass
class Billable:
    people: int = 0
    parts: int = 0  # billable SMS parts of the whole audience
    by_group: dict[str, int] = field(default_factory=dict)  # group reached through -> parts
    by_size: dict[int, int] = field(default_factory=dict)  # parts per SMS -> people

    def to_dict(self) -> dict[str, object]:
        return {"people": self.people, "parts": self.parts, "by_group": dict(self.by_group),
                "by_size": {str(k): v for k, v in sorted(self.by_size.items())}}


def parts_of(text: str, signature: str) -> int:
    """Billable parts of one recipient's text (without the signature) once signed."""
    return count_segments(wrap_signature(signature) + text).parts


def billable_parts(people: Iterable[AudienceMember], body: str, signature: str) -> Billable:
    """The parts a frozen ``body`` bills for ``people``: each rendered, signed and counted."""
    out = Billable()
    sig = wrap_signature(signature)
    cache: dict[str, int] = {}  # many recipients share a text, or its length
    for p in people:
        text = render_for(body, name=p.name, group=p.group, phone=p.phone)
        n = cache.get(text)
        if n is None:
            n = cache[text] = count_segments(sig + text).parts
            if len(cache) > 10_000:
                cache.clear()
        out.people += 1
        out.parts += n
        out.by_group[p.group] = out.by_group.get(p.group, 0) + n
        out.by_size[n] = out.by_size.get(n, 0) + 1
    return out
