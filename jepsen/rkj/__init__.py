"""raftkms's Jepsen-style fault-injection suite (see jepsen/README.md)."""
