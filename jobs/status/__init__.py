"""``silverline status``: one view of a tenant group's health, read without Spark."""
