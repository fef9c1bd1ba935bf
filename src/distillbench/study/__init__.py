"""The study: what runs (plan), whether a saved run counts (store), the runner, results.json."""
