"""The auditor's side: the hash-chained audit trail, the delivery log, reports, retention."""
