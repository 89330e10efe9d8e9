"""Budget decisions are taken one at a time across processes: on PostgreSQL a second decision waits
for the first's transaction (an advisory lock), so two workers starting two messages at once each
count the other's frozen deliveries. (SQLite: the write lock does the same.)"""

from __future__ import annotations

import threading
import time

import pytest

from broadcast.costs.guard import BudgetCheck
from broadcast.recipients.groups import add_group

pytestmark = pytest.mark.both_stores


def test_a_second_budget_decision_waits_for_the_first(ws, store):
    if not store.startswith("postgresql"):
        pytest.skip("PostgreSQL only: on SQLite budget decisions run under the database's write lock")
    from broadcast.costs.budgets import set_budget

    add_group(ws, "党工委")
    set_budget(ws, "党工委", "100")
    done = threading.Event()

    def second() -> None:
        with ws.engine.begin() as conn:
            BudgetCheck(conn, ws.settings)
        done.set()

    with ws.engine.begin() as conn:
        assert BudgetCheck(conn, ws.settings).active
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert not done.is_set()  # waiting for this transaction
    t.join(10)
    assert done.is_set()
