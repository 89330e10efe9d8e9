"""Dispatch: the sending engine (claim → send → record), rate limiting, retries, recovery."""
