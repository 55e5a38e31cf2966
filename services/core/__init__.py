"""Pure rules and shared value types (models, money, durations, units, masking, patterns, key layout,
errors, paging), plus the two session helpers every area uses: `lookup` and `audit`."""
