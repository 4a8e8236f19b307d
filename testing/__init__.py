"""Test support shared by the test suites and `bench/`: personas, real worker processes and private brokers, job
helpers, loopback listeners, the fake OpenAI/Anthropic server (fake_llm) and its fixtures (providers). Not tests
itself (pytest collects nothing here) and imported by no production code; installed with the project so `bench`
runs on a fresh machine.
"""
