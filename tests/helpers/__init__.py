"""What several test modules share, in one place (each module's docstring says more):

- ``stores``: the test databases (PostgreSQL reachable or not, a fresh schema per use);
- ``migrations``: a database as an older release left it;
- ``scripted``: the engine in-process with a gateway answering from a script;
- ``sending``: real ``broadcast`` processes against the real mock gateway (fault injection);
- ``serve``: ``broadcast receipts serve`` in its own process;
- ``receipt_rows``: what the receipts tables hold;
- ``rows``: a sent message and its deliveries written straight into the tables;
- ``files``: contact-list files written the way Excel and WPS write them.

Gateway fakes (``tests/gateways/fakes.py``) stay beside the gateway tests.
"""
