"""Embedded broker, database and mail server for `medins up` and the tests."""
