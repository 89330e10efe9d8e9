"""The auditor's side: the delivery log, reports, retention, and the audit trail as an auditor reads it
(the chain itself is `broadcast.db.audit_chain`)."""
