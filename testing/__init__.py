"""Test support shared by the test suites and `bench/`: personas, real worker processes and private brokers, job
helpers, loopback listeners. Not tests itself (pytest collects nothing here) and imported by no production code;
installed with the project so `bench` runs on a fresh machine.

The fake OpenAI/Anthropic server (ai_providers/tests/fake_llm.py) and its fixtures belong here too; they move
once the engine's capacity work that edits them has merged.
"""
