"""Two-way: what comes back from the phones.

* ``intake`` — every reply (pushed to the receipts endpoint, pulled, or read off a CMPP/SMPP link)
  is stored once with its raw payload, matched to the member (by phone) and to the message it most
  likely answers, and taken for what it is: an opt-out or re-subscribe keyword, a branch's
  submission (``BROADCAST_SUBMIT_PREFIX``), or feedback for the inbox. All in the transaction
  that stores it, before the provider is answered.
* ``inbox`` — the feedback inbox and its triage, in the office's words.
* ``submissions`` — lines the branches hand in for the daily series.
* ``untrusted`` — inbound text is data, never a template: neutralised for terminals, bounded.
"""
