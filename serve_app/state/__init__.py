"""Durable state shared by every gateway replica: the usage ledger, files, batches and the response cache."""
