"""Pure reimbursement rules: no I/O, no framework."""
