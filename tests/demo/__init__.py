"""`make demo`: the whole system on a throwaway PostgreSQL and cluster."""
