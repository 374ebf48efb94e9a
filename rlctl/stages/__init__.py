"""One module per stage: records in, records out, as iterators (DESIGN.md section 3)."""
