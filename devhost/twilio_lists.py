"""Twilio's list endpoints (Messages.json, Calls.json): filters, paging and the page envelope.

Shaped after Twilio's OpenAPI spec (twilio-oai `spec/json/twilio_api_v2010.json`,
`ListMessage`/`ListCall`) and what twilio-python 9.x needs to read a page
(`twilio/base/page.py`): exactly one records key besides the paging keys, HTTP 200, and a
`next_page_uri` relative to the API host that it follows until it is null.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

# PageSize: default 50, at most 1000 (spec). twilio-python sends `list(limit=n)` as
# PageSize=n without capping it (`Version.read_limits`), so larger sizes are capped here
# rather than refused.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Twilio's page tokens name the record a page starts after (PA…) or ends before (PB…),
# e.g. the spec's `PageToken=PAMM…`; a token is the only thing that selects a page.
_AFTER, _BEFORE = "PA", "PB"

Compare = Callable[[date, date], bool]


class InvalidListQuery(ValueError):
    """A list parameter Twilio would refuse (answered 400 with code 20001)."""


@dataclass(frozen=True)
class DateFilter:
    """One date filter: the field it reads and the operator per query key."""

    field: str
    keys: Mapping[str, Compare]


# Messages: "DateSent<" finds sent_dates "on and before" a date, "DateSent>" "on and
# after" (spec, ListMessage parameters).
MESSAGE_DATES = DateFilter(
    "date_sent", {"DateSent": operator.eq, "DateSent<": operator.le, "DateSent>": operator.ge}
)
# Calls: "StartTime<" is "started before this date", "StartTime>" "on or after" (spec,
# ListCall parameters).
CALL_DATES = DateFilter(
    "start_time", {"StartTime": operator.eq, "StartTime<": operator.lt, "StartTime>": operator.ge}
)


@dataclass(frozen=True)
class ListQuery:
    equal: dict[str, str]  # resource field -> value it must equal
    dates: list[tuple[str, Compare, date]]  # (field, operator, the date part only)
    echo: list[tuple[str, str]]  # the filters as received, for the page URIs
    page: int
    page_size: int
    token: str | None


def parse_query(
    query: Mapping[str, str],
    equal_keys: Mapping[str, str],
    dates: DateFilter,
    choices: Mapping[str, frozenset[str]] | None = None,
) -> ListQuery:
    """The filters, page and page size of a list request; InvalidListQuery if unusable.

    `equal_keys` maps a query key to the field it must equal; `choices` limits the values
    of some keys (the spec's enums)."""
    for key, allowed in (choices or {}).items():
        if query.get(key) and query[key] not in allowed:
            raise InvalidListQuery(f"Invalid {key}")
    equal = {field: query[key] for key, field in equal_keys.items() if query.get(key)}
    date_filters = [
        (dates.field, compare, _date_part(query[key]))
        for key, compare in dates.keys.items()
        if query.get(key)
    ]
    echo = [(key, query[key]) for key in (*equal_keys, *dates.keys) if query.get(key)]
    page_size = min(_integer(query, "PageSize", DEFAULT_PAGE_SIZE, low=1), MAX_PAGE_SIZE)
    return ListQuery(
        equal=equal,
        dates=date_filters,
        echo=echo,
        page=_integer(query, "Page", 0, low=0),
        page_size=page_size,
        token=query.get("PageToken") or None,
    )


def list_page(
    records: Sequence[dict[str, Any]], query: ListQuery, path: str, key: str
) -> dict[str, Any]:
    """One page of `records` (newest first already) as Twilio's envelope under `key`."""
    matching = [r for r in records if _matches(r, query)]
    start_at, end_at = _window(matching, query)
    items = matching[start_at:end_at]
    first_index = query.page * query.page_size

    def uri(page: int, token: str | None) -> str:
        params = [*query.echo, ("PageSize", str(query.page_size)), ("Page", str(page))]
        return f"{path}?{urlencode(params + ([('PageToken', token)] if token else []))}"

    has_next = end_at < len(matching)
    return {
        key: items,
        "end": first_index + len(items) - 1 if items else 0,
        "first_page_uri": uri(0, None),
        "next_page_uri": uri(query.page + 1, _AFTER + items[-1]["sid"]) if has_next else None,
        "page": query.page,
        "page_size": query.page_size,
        "previous_page_uri": (
            uri(query.page - 1, _BEFORE + items[0]["sid"]) if query.page > 0 and items else None
        ),
        "start": first_index,
        "uri": uri(query.page, query.token),
    }


def newest_first(records: Sequence[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Newest first by `field` (Twilio lists messages by date_sent, most recent first); a
    record without that date yet sorts by its creation. `records` are in creation order,
    which breaks ties (the dates have one-second resolution): the later record first."""
    ordered = list(enumerate(records))
    ordered.sort(key=lambda pair: (_timestamp(pair[1], field), pair[0]), reverse=True)
    return [record for _, record in ordered]


def _window(matching: Sequence[dict[str, Any]], query: ListQuery) -> tuple[int, int]:
    if query.token is None:
        return 0, query.page_size
    sids = [r["sid"] for r in matching]
    kind, sid = query.token[:2], query.token[2:]
    if kind not in (_AFTER, _BEFORE) or sid not in sids:
        raise InvalidListQuery("Invalid PageToken")
    index = sids.index(sid)
    if kind == _AFTER:
        return index + 1, index + 1 + query.page_size
    return max(0, index - query.page_size), index


def _matches(record: dict[str, Any], query: ListQuery) -> bool:
    if any(record.get(field) != value for field, value in query.equal.items()):
        return False
    for field, compare, wanted in query.dates:
        # No date yet (a message not sent, a call not dialled) matches no date filter.
        if not record.get(field) or not compare(_utc_date(record[field]), wanted):
            return False
    return True


def _date_part(value: str) -> date:
    """Only the date counts: twilio-python sends `YYYY-MM-DDTHH:MM:SSZ`, and Twilio uses only
    the date (twilio-java#501; Twilio staff: "use YYYY-MM-DD", twilio-oai#21). Other forms
    Twilio may accept are not modelled; an unreadable value is 20001 "Invalid date value"
    (twilio-cli#99)."""
    head, rest = value[:10], value[10:]
    if rest and not rest.startswith("T"):
        raise InvalidListQuery("Invalid date value")
    try:
        return date.fromisoformat(head)
    except ValueError:
        raise InvalidListQuery("Invalid date value") from None


def _integer(query: Mapping[str, str], key: str, default: int, *, low: int) -> int:
    raw = query.get(key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidListQuery(f"Invalid {key}") from None
    if value < low:
        raise InvalidListQuery(f"Invalid {key}")
    return value


def _utc_date(rfc2822: str) -> date:
    return parsedate_to_datetime(rfc2822).date()


def _timestamp(record: dict[str, Any], field: str) -> datetime:
    return parsedate_to_datetime(record.get(field) or record["date_created"])
