"""The bench's store proxy (bench/store_proxy.py) counts what the state-path figures rest on."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, TableTransactionError

from bench.store_proxy import Exchange, StoreProxy, sequential_round_trips
from tests.conftest import Azurite, table_prefix


def test_a_batch_is_one_request_and_a_409_a_conflict(azurite: Azurite) -> None:
    name = table_prefix() + "Proxy"
    with (
        StoreProxy(f"127.0.0.1:{azurite.port}") as proxy,
        TableServiceClient.from_connection_string(proxy.connection_string) as service,
    ):
        table = service.create_table_if_not_exists(name)
        mark = proxy.mark()
        rows = [{"PartitionKey": "p", "RowKey": str(i), "n": i} for i in range(5)]
        table.submit_transaction([("upsert", row) for row in rows])
        proxy.set_delay(0.001)
        with pytest.raises(ResourceExistsError):
            table.create_entity(rows[0])
        proxy.set_delay(0.0)
        assert [row["n"] for row in table.query_entities("PartitionKey eq 'p'")] == list(range(5))
        with pytest.raises(TableTransactionError):  # a failed changeset still answers 202
            table.submit_transaction([("create", rows[0])])
        exchanges = proxy.exchanges(mark)
    seen = [(e.method, e.path.rsplit("/", 1)[-1], e.status, e.inner, e.conflict) for e in exchanges]
    assert seen == [
        ("POST", "$batch", 202, 0, False),
        ("POST", name, 409, 0, True),
        ("GET", f"{name}()", 200, 0, False),
        ("POST", "$batch", 202, 409, True),
    ]
    assert [e.delayed > 0 for e in exchanges] == [False, True, False, False]


def _exchange(start: float, end: float) -> Exchange:
    return Exchange("GET", "/devstoreaccount1/T()", 200, start, end, 0.0)


@pytest.mark.parametrize(
    ("intervals", "chain"),
    [
        ([], 0),
        ([(0, 1), (1, 2), (2, 3)], 3),  # one after another
        ([(0, 1), (0.5, 1.5), (2, 3)], 2),  # two at once, then one
        ([(0, 10), (0, 1), (2, 3), (4, 5)], 3),  # three in a row beside one long request
    ],
)
def test_sequential_round_trips_is_the_longest_chain(
    intervals: list[tuple[float, float]], chain: int
) -> None:
    assert sequential_round_trips([_exchange(s, e) for s, e in intervals]) == chain
