"""Database access: the pool as a Faust service, and the migrations runner."""
