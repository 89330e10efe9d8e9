"""Costs and budgets: what a send costs, what was spent, and the monthly budgets of groups.

    prices     BROADCAST_PRICE_<GATEWAY> (yuan per SMS part) and each provider's billing rule
    estimate   a message's billable parts for its audience × the first gateway's price
    spend      billed parts × the price of the gateway that carried each delivery, per month/group
    guard      budgets in force: the checks at approval and when sending starts, holds, releases,
               the two-person approval of an overrun
    budgets    set, remove and show a group's monthly budget
    money      Decimal yuan / integer fen, "≈ ¥617" for people, exact strings for JSON

For a month plan ("December: 22 sending days, 701 members, 15,422 SMS, ≈ ¥617"):
``prices.price_of(settings, gateway)``, ``estimate.estimate_audience(settings, people, body,
signature)`` / ``estimate.estimate_message(ws, message_id)``, ``budgets.group_month_spend(ws, month)``.

It sits above ``gateways`` (a gateway declares how its provider bills) and below ``dispatch``
(which checks the budget when a message starts sending).
"""
