"""AI Core's Python client and command line (`aicore`)."""
