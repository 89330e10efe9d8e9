"""What several test modules share, in one place: rows written straight into the tables
(``rows``), ... (see each module's docstring)."""
