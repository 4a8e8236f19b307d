"""Adapters: the only modules that touch a framework's private API, each kept for a measured gain on a headline
benchmark (docs/PERFORMANCE.md, "Private framework APIs") and pinned by a test named after it, so an upgrade that
changes what it relies on fails that test. Everything else uses the frameworks' public APIs."""
