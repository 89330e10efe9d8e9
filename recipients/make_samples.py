#!/usr/bin/env python3
"""Generate the sample recipient lists in this folder (and big files for benchmarks).

Standalone: needs only the standard library and openpyxl; it imports nothing from
the ``broadcast`` package, so a benchmark or a test can import it as a module.
Deterministic: every function draws from the ``random.Random`` it is given, and
``main()`` seeds them from ``SEED``, so the files are byte-for-byte reproducible
(except the .xlsx files, whose zip entries carry a timestamp).

All people, organisations and mobile numbers are invented.  Mobile numbers have
the form ``PPP000xxxxx``: one of the prefixes in ``PHONE_PREFIXES``, three zeros,
five digits.  The prefixes are allocated mobile ranges (so the numbers pass the
import's check against phonenumbers' metadata, which rejects e.g. 140 or 160).

    python recipients/make_samples.py                  # the sample files, in this folder
    python recipients/make_samples.py --out /tmp/s     # ... somewhere else
    python recipients/make_samples.py --rows 100000 --format xlsx --path /tmp/big.xlsx
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

SEED = 20240701
PARENT = "城南新区党工委"
FIELDS = ["序号", "姓名", "手机号码", "所属支部", "职务", "备注"]
PHONE_PREFIXES = ("130", "139", "150", "166", "170", "180", "190")  # allocated mobile ranges
PHONE_SPACE = len(PHONE_PREFIXES) * 100_000  # PPP000ddddd

# --------------------------------------------------------------------------- organisations

# (category, share of the branches, candidates).  The first candidates of each list are
# taken first (they are the names used in the docs), the rest are picked at random.
_ORG_POOLS: list[tuple[str, float, list[str]]] = [
    ("community", 14, [f"{p}社区党支部" for p in (
        "城南", "南湖", "望江", "桂园", "锦绣", "新华", "和平", "鹭洲", "翠屏", "凤鸣", "杏林",
        "柳湾", "东塘", "滨江", "阳光", "幸福", "康乐", "春晖", "文昌", "金桥")]),
    ("village", 14, [f"{p}村党支部" for p in (
        "青石", "白沙", "双桥", "清水", "梅岭", "荷塘", "西岗", "龙泉", "石门", "云溪", "长坪",
        "枫林", "樟树", "竹园", "槐荫", "兴隆", "丰收", "红旗", "马鞍", "黄泥", "桃源", "李家湾",
        "王家庄", "河口", "三岔")]),
    ("school", 7, [f"{p}党支部" for p in (
        "新区实验小学", "城南中学", "城南第一小学", "城南第二小学", "南湖小学", "新区第一中学",
        "新区职业技术学校", "新区中心幼儿园", "望江初级中学", "青石九年制学校")]),
    ("hospital", 4, [f"{p}党支部" for p in (
        "新区人民医院", "新区中医院", "城南街道社区卫生服务中心", "青石卫生院", "新区妇幼保健院")]),
    ("enterprise", 10, [f"{p}有限公司党支部" for p in (
        "金桥电子", "南湖建材", "城南物流", "鑫达机械制造", "华腾纺织", "恒信建设工程",
        "绿源农业科技", "新区城市建设投资", "宏远汽车配件", "瑞丰食品", "博远信息技术",
        "城南水务", "凤鸣旅游开发", "海川医药", "天成包装")]),
    ("joint", 3, [
        "新区非公企业第一联合党支部", "新区非公企业第二联合党支部", "新区个体私营经济联合党支部",
        "新区社会组织联合党支部", "新区律师行业党支部"]),
    ("government", 8, [f"区{p}机关党支部" for p in (
        "卫健局", "财政局", "教育局", "住建局", "民政局", "市场监管局", "应急管理局",
        "自然资源局", "人社局", "城管局", "农业农村局", "统计局", "党政办")]),
    ("public", 5, [f"{p}党支部" for p in (
        "城南供电所", "城南派出所", "城南税务所", "城南邮政支局", "青石司法所", "新区消防救援站",
        "新区自来水厂", "城南市场监管所")]),
]

# relative size of a branch by category (communities and villages are the big ones)
_ORG_WEIGHT = {"社区": 2.2, "村党": 1.8, "机关": 1.0, "联合": 1.2}


def _largest_remainder(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (sum is exact)."""
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    out = [math.floor(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (out[i] - raw[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def organisations(n: int = 65, rng: random.Random | None = None) -> list[str]:
    """``n`` unique, realistic branch names of the 城南新区党工委 (see ``PARENT``).

    Mixes community, village, school, hospital, enterprise, joint (非公/社会组织),
    government-office (机关) and public-unit branches, listed by category.
    """
    rng = rng or random.Random(SEED)
    if n <= 0:
        return []
    counts = _largest_remainder(n, [share for _, share, _ in _ORG_POOLS])
    names: list[str] = []
    spill = 0
    for (_, _, pool), want in zip(_ORG_POOLS, counts):
        want += spill
        take = min(want, len(pool))
        spill = want - take
        fixed, rest = pool[:1], pool[1:]
        picked = (fixed + rng.sample(rest, max(0, take - 1)))[:take]
        names.extend(picked)
    # more branches than the pools hold: numbered joint branches
    k = 1
    while len(names) < n:
        extra = f"城南新区第{k}联合党支部"
        if extra not in names:
            names.append(extra)
        k += 1
    assert len(set(names)) == len(names)
    return names


def organisation_rows(orgs: list[str]) -> list[dict[str, str]]:
    """Rows for ``organisations.csv``: the committee (no parent), then its branches."""
    return [{"名称": PARENT, "上级": ""}] + [{"名称": o, "上级": PARENT} for o in orgs]


# --------------------------------------------------------------------------- people

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
    "邵万钱严覃武戴莫孔向汤"
)
# weights: the first dozen surnames are much more common
_SURNAME_W = [6 if i < 5 else 3 if i < 20 else 1 for i in range(len(_SURNAMES))]
_COMPOUND = ["欧阳", "司马", "诸葛", "上官", "东方"]
_GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华建国志红玉梅德福海波宁辉鹏飞鑫"
    "婷雪琳颖晨浩宇子涵欣怡思雨佳琪俊峰文斌立新春燕晓东振华永庆德胜秋菊凤霞桂芳淑珍玉兰"
    "明辉建军卫东红梅丽萍海燕文静家豪梓轩一诺"
)
_OFFICERS_SMALL = ["书记"]
_OFFICERS = ["书记", "组织委员", "宣传委员", "纪检委员"]
_OFFICERS_BIG = ["书记", "副书记", "组织委员", "宣传委员", "纪检委员"]
_NOTES = ["流动党员", "退休", "预备党员", "外出务工", "年老体弱", "新转入", "在外地就学", "病休"]


def _name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.02:
        return rng.choice(_COMPOUND) + rng.choice(_GIVEN)
    surname = rng.choices(_SURNAMES, _SURNAME_W)[0]
    if r < 0.30:
        return surname + rng.choice(_GIVEN)
    return surname + rng.choice(_GIVEN) + rng.choice(_GIVEN)


def _phone(index: int) -> str:
    """The ``index``-th fake number: a ``PHONE_PREFIXES`` entry + ``000`` + 5 digits."""
    return f"{PHONE_PREFIXES[index // 100_000]}000{index % 100_000:05d}"


def _phone_permutation(rng: random.Random):
    """A pseudo-random bijection on range(PHONE_SPACE), so numbers are unique and
    look unordered without keeping a set: a 6-round Feistel network on 20 bits,
    cycle-walked into range."""
    keys = [rng.getrandbits(32) for _ in range(6)]

    def permute(i: int) -> str:
        x = i
        while True:
            left, right = x >> 10, x & 1023
            for k in keys:
                left, right = right, left ^ ((((right + k) * 0x9E3779B1) & 0xFFFFFFFF) >> 22)
            x = (left << 10) | right
            if x < PHONE_SPACE:
                return _phone(x)

    return permute


def _org_weight(org: str) -> float:
    if org.startswith("城南社区"):  # the old town centre: by far the biggest branch
        return 12.0
    for key, w in _ORG_WEIGHT.items():
        if key in org:
            return w
    return 0.8


def people(n: int, orgs: list[str], rng: random.Random | None = None,
           dup_rate: float = 0.03) -> Iterator[dict[str, str]]:
    """Yield ``n`` member rows (dicts keyed by ``FIELDS``), branch by branch.

    Lazy: memory is O(len(orgs) + dup_rate*n), so n=1,000,000 rows is fine (up to
    700,000 distinct people).  Each branch lists its officers first (书记 ...), then
    党员.  About ``dup_rate`` of the people also appear in a later branch (same name
    and phone, different 所属支部, 职务 党员), listed at the end of that branch.
    """
    rng = rng or random.Random(SEED)
    if not orgs:
        raise ValueError("need at least one organisation")
    if n > PHONE_SPACE:
        raise ValueError(f"at most {PHONE_SPACE} rows (distinct fake numbers)")
    weights = [_org_weight(o) * rng.uniform(0.6, 1.4) for o in orgs]
    sizes = _largest_remainder(n, weights)
    phone = _phone_permutation(rng)
    pending: dict[int, list[tuple[str, str]]] = {}
    seq = 0
    pid = 0
    for k, org in enumerate(orgs):
        dual = pending.pop(k, [])
        own = sizes[k] - len(dual)
        officers = (_OFFICERS_BIG if own >= 20 else _OFFICERS if own >= 7 else _OFFICERS_SMALL)
        for i in range(own):
            name, mobile = _name(rng), phone(pid)
            pid += 1
            seq += 1
            note = rng.choice(_NOTES) if rng.random() < 0.08 else ""
            role = officers[i] if i < len(officers) else "党员"
            if role != "党员" and note in ("退休", "病休", "年老体弱", "预备党员", "在外地就学"):
                note = ""
            yield {"序号": str(seq), "姓名": name, "手机号码": mobile, "所属支部": org,
                   "职务": role, "备注": note}
            if k + 1 < len(orgs) and rng.random() < dup_rate:
                for _ in range(5):  # a later branch that still has room for an own member
                    t = rng.randrange(k + 1, len(orgs))
                    if sizes[t] - len(pending.get(t, ())) > 1:
                        pending.setdefault(t, []).append((name, mobile))
                        break
        for name, mobile in dual:
            seq += 1
            yield {"序号": str(seq), "姓名": name, "手机号码": mobile, "所属支部": org,
                   "职务": "党员", "备注": ""}


# --------------------------------------------------------------------------- writers

def _peek_header(rows: Iterable[dict], header: list[str] | None):
    it = iter(rows)
    if header is not None:
        return header, it
    first = next(it, None)
    if first is None:
        return list(FIELDS), it
    return list(first), itertools.chain([first], it)


def write_csv(path, rows: Iterable[dict], encoding: str = "utf-8", delimiter: str = ",",
              bom: bool = False, header: list[str] | None = None) -> int:
    """Write ``rows`` (dicts) as delimited text; returns the number of data rows.

    ``encoding`` is any Python codec: 'utf-8', 'utf-8-sig' (BOM), 'gb18030', 'gbk',
    'utf-16' (Python writes a BOM; with delimiter '\\t' this is Excel's "Unicode text")
    ...  ``bom=True`` adds a byte-order mark where the codec does not write one itself.
    Lines end with CRLF as Excel writes them.  Streams: rows may be a generator.
    """
    header, it = _peek_header(rows, header)
    codec = encoding.lower().replace("_", "-")
    if bom and codec in ("utf-8", "utf8"):
        encoding, bom = "utf-8-sig", False
    if codec in ("utf-8-sig", "utf-16", "utf-32"):
        bom = False  # the codec writes it
    count = 0
    with open(path, "w", encoding=encoding, newline="") as f:
        if bom:
            f.write("\ufeff")
        w = csv.writer(f, delimiter=delimiter, lineterminator="\r\n")
        w.writerow(header)
        for row in it:
            w.writerow(["" if row.get(h) is None else row.get(h) for h in header])
            count += 1
    return count


def write_xlsx(path, rows: Iterable[dict], sheet: str = "通讯录",
               header: list[str] | None = None) -> int:
    """Write ``rows`` to a one-sheet .xlsx with openpyxl's write-only (streaming) mode.

    String values are written as text cells; phone-number strings get the Text
    number format ("@"), as in a sheet whose phone column was formatted as text.
    int/float values (see the messy variant) are written as numeric cells.
    Returns the number of data rows.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    header, it = _peek_header(rows, header)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    widths = {"序号": 6, "姓名": 10, "手机号码": 15, "所属支部": 30, "职务": 10, "备注": 14}
    for i, h in enumerate(header):
        ws.column_dimensions[chr(ord("A") + i)].width = widths.get(h, 14)
    bold = Font(bold=True)
    head = []
    for h in header:
        c = WriteOnlyCell(ws, value=h)
        c.font = bold
        head.append(c)
    ws.append(head)
    phone_cols = {i for i, h in enumerate(header) if h in ("手机号码", "手机", "Mobile", "phone")}
    count = 0
    for row in it:
        out = []
        for i, h in enumerate(header):
            v = row.get(h)
            if v == "":
                v = None
            elif h in ("序号", "No.") and isinstance(v, str) and v.isdigit():
                v = int(v)  # a typed-in running number is a numeric cell
            if i in phone_cols and isinstance(v, str):
                c = WriteOnlyCell(ws, value=v)
                c.number_format = "@"
                out.append(c)
            else:
                out.append(v)
        ws.append(out)
        count += 1
    wb.save(path)
    return count


# --------------------------------------------------------------------------- mistakes

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

# kind -> (count per 120 rows, what an importer should do with the row)
MISTAKES: dict[str, tuple[int, str]] = {
    "spaced":         (3, "normalised"),   # 139 0000 1234
    "plus86_dashed":  (3, "normalised"),   # +86-139-0000-1234
    "prefix_0086":    (2, "normalised"),   # 008613900001234
    "prefix_86":      (2, "normalised"),   # 8613900001234
    "fullwidth":      (3, "normalised"),   # １３９００００１２３４
    "trailing_.0":    (3, "normalised"),   # 13900001234.0
    "name_spaces":    (4, "normalised"),   # ' 张伟', '张伟\xa0', '\u3000张伟 '
    "scientific":     (3, "rejected"),     # 1.39E+10 (digits lost)
    "landline":       (3, "rejected"),     # 0514-84683100
    "too_short":      (2, "rejected"),     # 1390000123
    "too_long":       (1, "rejected"),     # 139000012345
    "empty_phone":    (3, "rejected"),     # ''
    "unknown_group":  (3, "unknown_group"),  # 城南社区支部: rejected unless groups are created
    "phone_conflict": (2, "conflict"),     # another person's phone with a different name
    "exact_duplicate": (2, "duplicate"),   # a copy of a whole row (added)
}


def _excel_general(phone: str) -> str:
    """How Excel's General format shows an 11-digit number: 1.39E+10."""
    mant, exp = f"{int(phone):.5E}".split("E")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}E+{int(exp):02d}"


def _misspell(group: str, orgs, rng: random.Random) -> str:
    variants = []
    if "党支部" in group:
        variants += [group.replace("党支部", "支部"), group.replace("党支部", "党总支"),
                     group.replace("党支部", "党支布")]
    if "社区" in group:
        variants.append(group.replace("社区", "社区居委会"))
    if "村" in group:
        variants.append(group.replace("村党支部", "村委会"))
    variants = [v for v in variants if v != group and v not in orgs] or [group + "（新）"]
    return rng.choice(variants)


def messy(rows: list[dict], rng: random.Random | None = None,
          orgs: Iterable[str] | None = None) -> tuple[list[dict], dict]:
    """A copy of ``rows`` with real-world mistakes injected into ~30 % of them.

    Each kind of ``MISTAKES`` hits its own rows (no row gets two mistakes); counts
    are per 120 rows and scale with ``len(rows)`` (at least 1 each).  Exact
    duplicates are extra rows, so the result has ``len(rows) + duplicates`` rows.
    ``序号`` is renumbered 1..N except that a duplicate copies its original's.

    Returns ``(rows, expected)``: ``expected`` maps each kind to the 序号 of the
    rows it hit (for phone_conflict: pairs [earlier, later] of rows with one phone
    and two names) and sums them up (see ``expected['summary']``).
    """
    rng = rng or random.Random(SEED)
    rows = [dict(r) for r in rows]
    for i, r in enumerate(rows, 1):
        r["序号"] = str(i)
    known = set(orgs) if orgs is not None else {r["所属支部"] for r in rows}
    scale = len(rows) / 120
    want = {k: max(1, round(c * scale)) for k, (c, _) in MISTAKES.items()}
    # rows hit in place (conflicts need a donor too); duplicates come on top
    in_place = [k for k in MISTAKES if k != "exact_duplicate"]
    need = sum(want[k] for k in in_place) + want["phone_conflict"] + want["exact_duplicate"]
    if need > len(rows):
        raise ValueError(f"need at least {need} rows for the mistakes, got {len(rows)}")
    # people listed twice (one per branch) are left alone, so every mistake is clear-cut
    by_phone = Counter(r["手机号码"] for r in rows)
    free = [i for i, r in enumerate(rows) if by_phone[r["手机号码"]] == 1]
    if len(free) < need:
        free = list(range(len(rows)))
    chosen = rng.sample(free, need)
    untouched = chosen[sum(want[k] for k in in_place):]
    hit: dict[str, list[int]] = {k: [] for k in MISTAKES}
    pos = 0
    for kind in in_place:
        for _ in range(want[kind]):
            i = chosen[pos]
            pos += 1
            r = rows[i]
            p = r["手机号码"]
            if kind == "spaced":
                r["手机号码"] = f"{p[:3]} {p[3:7]} {p[7:]}"
            elif kind == "plus86_dashed":
                r["手机号码"] = f"+86-{p[:3]}-{p[3:7]}-{p[7:]}"
            elif kind == "prefix_0086":
                r["手机号码"] = "0086" + p
            elif kind == "prefix_86":
                r["手机号码"] = "86" + p
            elif kind == "fullwidth":
                r["手机号码"] = p.translate(_FULLWIDTH)
            elif kind == "trailing_.0":
                r["手机号码"] = p + ".0"
            elif kind == "name_spaces":
                r["姓名"] = rng.choice([" {}", "{} ", "{}\u00a0", "\u00a0{}", "\u3000{} ",
                                         "  {}\u00a0"]).format(r["姓名"])
            elif kind == "scientific":
                r["手机号码"] = _excel_general(p)
            elif kind == "landline":
                area = rng.choice(["0514", "0515", "0516", "025", "0517"])
                r["手机号码"] = f"{area}-{rng.choice('345678')}{rng.randrange(10**6, 10**7)}"
            elif kind == "too_short":
                r["手机号码"] = p[:-rng.choice([1, 2])]
            elif kind == "too_long":
                r["手机号码"] = p + str(rng.randrange(10))
            elif kind == "empty_phone":
                r["手机号码"] = rng.choice(["", " "])
            elif kind == "unknown_group":
                r["所属支部"] = _misspell(r["所属支部"], known, rng)
            elif kind == "phone_conflict":
                donors = [j for j in untouched[want["exact_duplicate"]:]
                          if rows[j]["姓名"] != r["姓名"]]
                if not donors:
                    donors = [j for j in range(len(rows)) if j not in chosen
                              and rows[j]["姓名"] != r["姓名"]]
                j = donors[len(hit[kind]) % len(donors)]
                r["手机号码"] = rows[j]["手机号码"]
                hit[kind].append(sorted([rows[j]["序号"], r["序号"]], key=int))
                continue
            hit[kind].append(r["序号"])
    # exact duplicates: a copy of an untouched row, pasted again a little further down
    for i in sorted(untouched[: want["exact_duplicate"]], reverse=True):
        at = min(len(rows), i + 1 + rng.randrange(0, 4))
        rows.insert(at, dict(rows[i]))
        hit["exact_duplicate"].append(rows[i]["序号"])
    for v in hit.values():
        v.sort(key=lambda x: int(x[0]) if isinstance(x, list) else int(x))

    by_outcome = Counter()
    for kind, (_, outcome) in MISTAKES.items():
        by_outcome[outcome] += len(hit[kind])
    summary = {
        "rows": len(rows),
        "rows_with_mistakes": sum(len(v) for v in hit.values()),
        "accepted_after_cleaning": by_outcome["normalised"],
        "rejected_bad_phone": by_outcome["rejected"],
        "unknown_group": by_outcome["unknown_group"],
        "phone_conflicts": by_outcome["conflict"],
        "exact_duplicates": by_outcome["duplicate"],
        "valid_rows_with_create_groups": len(rows) - by_outcome["rejected"],
        "valid_rows_without_create_groups":
            len(rows) - by_outcome["rejected"] - by_outcome["unknown_group"],
    }
    expected = {"kinds": {k: hit[k] for k in MISTAKES},
                "outcome": {k: o for k, (_, o) in MISTAKES.items()},
                "summary": summary}
    return rows, expected


def excel_numbers(rows: list[dict], rng: random.Random, share: float = 0.3) -> list[dict]:
    """The rows as they come out of a sheet whose phone column was not text:
    ``...0`` strings become floats and ``share`` of the plain 11-digit numbers ints."""
    out = []
    for r in rows:
        r = dict(r)
        p = r["手机号码"]
        if p.endswith(".0") and p[:-2].isdigit():
            r["手机号码"] = float(p)
        elif len(p) == 11 and p.isdigit() and rng.random() < share:
            r["手机号码"] = int(p)
        out.append(r)
    return out


# --------------------------------------------------------------------------- main

def make_samples(out: Path, members: int = 720) -> dict[str, int]:
    """Write the sample files into ``out``; returns {file name: data rows}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    orgs = organisations(65, random.Random(SEED))
    written["organisations.csv"] = write_csv(out / "organisations.csv", organisation_rows(orgs),
                                             "utf-8", header=["名称", "上级"])
    rows = list(people(members, orgs, random.Random(SEED + 1)))
    written["members.csv"] = write_csv(out / "members.csv", rows, "utf-8")
    written["members.xlsx"] = write_xlsx(out / "members.xlsx", rows)

    # messy: the biggest community's list (城南社区) plus a few other big branches' lists,
    # 118 rows + 2 exact duplicates
    size = Counter(r["所属支部"] for r in rows)
    community = max((o for o in orgs if "社区" in o), key=lambda o: (size[o], o))
    rng = random.Random(SEED + 2)
    others = [o for o in orgs if o != community and size[o] >= 15]
    picked = [community]
    while sum(size[o] for o in picked) < 118:
        picked.append(others.pop(rng.randrange(len(others))))
    base = [r for o in picked for r in rows if r["所属支部"] == o][:118]
    bad, expected = messy(base, rng, orgs)
    written["members-messy-gb18030.csv"] = write_csv(out / "members-messy-gb18030.csv", bad,
                                                     "gb18030")
    written["members-messy.xlsx"] = write_xlsx(out / "members-messy.xlsx",
                                               excel_numbers(bad, rng), sheet="Sheet1")
    expected["files"] = ["members-messy-gb18030.csv", "members-messy.xlsx"]
    expected["branches"] = picked
    (out / "members-messy.expected.json").write_text(
        json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    # "Unicode text" from Excel: UTF-16 + BOM, tab-separated, English headers
    taken = set(picked)
    rest = [r for r in rows if r["所属支部"] not in taken and
            ("有限公司" in r["所属支部"] or "学" in r["所属支部"] or "医院" in r["所属支部"])]
    uni = [{"No.": str(i), "Name": r["姓名"], "Mobile": r["手机号码"], "Group": r["所属支部"],
            "Title": r["职务"], "Notes": r["备注"]} for i, r in enumerate(rest[:50], 1)]
    written["members-unicode.txt"] = write_csv(out / "members-unicode.txt", uni, "utf-16",
                                               delimiter="\t")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="folder for the sample files (default: this script's folder)")
    ap.add_argument("--rows", type=int, help="write one big clean file of N rows instead")
    ap.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    ap.add_argument("--path", type=Path, help="the big file (default: OUT/members-N.FORMAT)")
    ap.add_argument("--encoding", default="utf-8", help="for --format csv (default utf-8)")
    ap.add_argument("--orgs", type=int, default=65, help="branches for --rows (default 65)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if args.rows is not None:
        path = args.path or args.out / f"members-{args.rows}.{args.format}"
        path.parent.mkdir(parents=True, exist_ok=True)
        orgs = organisations(args.orgs, random.Random(args.seed))
        rows = people(args.rows, orgs, random.Random(args.seed + 1))
        if args.format == "xlsx":
            n = write_xlsx(path, rows)
        else:
            n = write_csv(path, rows, args.encoding)
        print(f"{path}: {n} rows")
        return 0
    for name, n in make_samples(args.out).items():
        print(f"{args.out / name}: {n} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
