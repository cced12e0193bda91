"""Writing the tenants' Iceberg silver tables: commits, snapshots, staging, schema evolution."""
