"""What the tests build on, one module per topic; fixtures themselves live in conftest.py files
(tests/conftest.py for those several tiers use, tests/<tier>/conftest.py for one tier's)."""
