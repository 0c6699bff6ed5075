"""Out-of-band caller verification: flow, codes, policy and code delivery."""
