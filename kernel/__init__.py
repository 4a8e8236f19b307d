"""The shared kernel: small rules every app relies on (the network guard, …). It imports no Django app."""
