"""The run-dir contract: every file a run or a sweep writes, and the typed records in them."""
