"""Delivery receipts pushed by gateways: parse (``formats``), record first and apply after
(``store``), served over HTTP by ``broadcast receipts serve`` (``server``).

Nothing here is imported by ``broadcast.receipts`` itself: starlette and uvicorn load only when
the server is built.
"""
