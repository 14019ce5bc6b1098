"""Authentication: verified tokens become a ``Caller``; SMART scopes narrow what it may do."""
