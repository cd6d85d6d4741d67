"""The operational store: schema, engines, migrations and repositories (all OLTP SQL)."""
