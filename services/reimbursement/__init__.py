"""The reimbursement service."""
