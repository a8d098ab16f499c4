"""critique_revise's helpers (SL-CAI text handling)."""
