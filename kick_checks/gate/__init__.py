"""The gate: tolerances, baseline files, the baseline store (check, record, compare), the comparison of a
compressed result with its dense baseline, and the paired statistics behind it."""
