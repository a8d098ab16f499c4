"""Pairwise judges behind one interface (`Judge.pairwise`): local HF model, OpenAI-compatible endpoint, gold rule,
human labels. Written by hand: TRL removed its judges in 2026 and no maintained library scores both orders, keeps
soft labels and caches judgments (docs/methods.md, "Constitutional AI and RLAIF")."""
