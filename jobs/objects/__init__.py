"""Reading the raw objects: fetch, decode by format, check and convert rows."""
